//! kubelet's configuration: what this machine needs, and why.

use super::{CLUSTER_DOMAIN, DNS_SERVICE_IP, NODE_IP, NodeLayout, Ports};

/// The KubeletConfiguration.
///
/// - `failCgroupV1: false`, `cgroupDriver: cgroupfs`: the host has cgroup v1 (hybrid) and no
///   systemd; kubelet 1.37 refuses cgroup v1 unless `failCgroupV1` is false.
/// - `failSwapOn: false`: kubelet refuses to start on a machine with swap otherwise.
/// - Eviction and image GC thresholds out of the way: the machine's disk is shared with builds
///   and often over 85 % full, which would evict the pods and delete the imported images
///   (there is no registry to pull them back from).
/// - `resolvConf` is an empty file: pods get the cluster's DNS and search domains only, never
///   the host's resolvers (nothing may leave this machine).
/// - Authentication by client certificate from the plane's CA and by token (webhook),
///   authorization by the API server (webhook), no anonymous access, no read-only port.
/// - Everything kubelet writes lives under the node's directory, except the paths it hard-codes
///   (`/var/lib/kubelet/device-plugins`, `/var/log/containers`) that the teardown removes.
pub(crate) fn config(layout: &NodeLayout, ports: &Ports) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {NODE_IP}
port: {kubelet_port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz_port}
tlsCertFile: {tls_cert}
tlsPrivateKeyFile: {tls_key}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {ca}
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://{socket}
clusterDomain: {CLUSTER_DOMAIN}
clusterDNS:
  - {DNS_SERVICE_IP}
resolvConf: {resolv_conf}
volumePluginDir: {volume_plugins}
podLogsDir: {pod_logs}
staticPodPath: ""
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
imageMinimumGCAge: 24h
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
nodeStatusUpdateFrequency: 2s
syncFrequency: 10s
maxPods: 110
"#,
        kubelet_port = ports.kubelet,
        healthz_port = ports.kubelet_healthz,
        tls_cert = layout.pki.kubelet_serving_cert.display(),
        tls_key = layout.pki.kubelet_serving_key.display(),
        ca = layout.pki.ca_cert.display(),
        socket = layout.containerd_socket().display(),
        resolv_conf = layout.dir.join("resolv.conf").display(),
        volume_plugins = layout.dir.join("volume-plugins").display(),
        pod_logs = layout.dir.join("pod-logs").display(),
    )
}
