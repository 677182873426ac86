//! The node's cluster services: kube-proxy (Service routing) and CoreDNS (cluster DNS), both
//! host processes, and the objects that make them look as in a real cluster.

use super::{CLUSTER_CIDR, CLUSTER_DOMAIN, DNS_SERVICE_IP, NODE_IP, NODE_NAME, NodeLayout, Ports};

/// kube-proxy in iptables mode. It touches nothing outside its own chains: no conntrack sysctls
/// (`maxPerCore: 0`, zero timeouts), no `route_localnet` (no localhost NodePorts), NodePorts
/// only on the node address.
pub(crate) fn proxy_config(layout: &NodeLayout, ports: &Ports) -> String {
    format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: {kubeconfig}
hostnameOverride: {NODE_NAME}
bindAddress: {NODE_IP}
clusterCIDR: {CLUSTER_CIDR}
healthzBindAddress: 127.0.0.1:{healthz}
metricsBindAddress: 127.0.0.1:{metrics}
nodePortAddresses: ["{NODE_IP}/32"]
iptables:
  localhostNodePorts: false
  masqueradeAll: false
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"#,
        kubeconfig = layout.kubeconfig("kube-proxy").display(),
        healthz = ports.proxy_healthz,
        metrics = ports.proxy_metrics,
    )
}

/// CoreDNS's Corefile: the cluster zone from the API server, on the node address. No `forward`:
/// names outside the cluster are not resolved (nothing may leave this machine).
pub(crate) fn corefile(layout: &NodeLayout, ports: &Ports) -> String {
    format!(
        r#".:{port} {{
    bind {NODE_IP}
    errors
    health 127.0.0.1:{health}
    ready 127.0.0.1:{ready}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
}}
"#,
        port = ports.dns,
        health = ports.dns_health,
        ready = ports.dns_ready,
        kubeconfig = layout.kubeconfig("coredns").display(),
    )
}

/// What makes CoreDNS the cluster's DNS: its read access, and the `kube-dns` Service at the
/// address kubelet gives pods, routed (a selector-less Service with its own EndpointSlice) to
/// the host process.
pub(crate) fn dns_objects(ports: &Ports) -> String {
    format!(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: mcall:coredns
rules:
  - apiGroups: [""]
    resources: [services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: mcall:coredns
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: mcall:coredns
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: {user}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels:
    k8s-app: kube-dns
spec:
  clusterIP: {DNS_SERVICE_IP}
  ports:
    - name: dns
      port: 53
      protocol: UDP
      targetPort: {port}
    - name: dns-tcp
      port: 53
      protocol: TCP
      targetPort: {port}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels:
    kubernetes.io/service-name: kube-dns
    endpointslice.kubernetes.io/managed-by: mcall-tests
addressType: IPv4
endpoints:
  - addresses: ["{NODE_IP}"]
    conditions:
      ready: true
    nodeName: {NODE_NAME}
ports:
  - name: dns
    port: {port}
    protocol: UDP
  - name: dns-tcp
    port: {port}
    protocol: TCP
"#,
        user = crate::pki::DNS_USER,
        port = ports.dns,
    )
}
