#!/bin/sh
# Undoes what a local node (mcall_tests::node) changed on this machine. Idempotent: it runs
# again safely, and on a node that only got half-way up. $1 is the node's state file, written
# before the node changed anything.
set -u
. "$1"
log() { printf '[node teardown] %s\n' "$*"; }

# Kills the process in the node's pid file for $1, if it still runs $1 (pids are reused).
kill_recorded() {
  pidf="$NODE_DIR/pids/$1"
  [ -f "$pidf" ] || return 0
  pid=$(cat "$pidf")
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] && kill -9 "$pid" 2>/dev/null
  return 0
}

# The node's processes, clients of containerd first. SIGKILL: their state is thrown away.
for name in kube-scheduler coredns kube-proxy kubelet; do kill_recorded "$name"; done

# Every container of the node, through runc's own records (containerd may already be gone),
# then the shims and containerd.
if [ -d "$RUNC_ROOT" ]; then
  for ns in "$RUNC_ROOT"/*; do
    [ -d "$ns" ] || continue
    for id in $(runc --root "$ns" list -q 2>/dev/null); do
      runc --root "$ns" delete -f "$id" >/dev/null 2>&1 || log "runc delete $id failed"
    done
  done
fi
pkill -9 -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCKET" 2>/dev/null
kill_recorded containerd

# Mounts under the node's directory (rootfs overlays, volumes, network namespaces), deepest
# first.
awk -v dir="$NODE_DIR/" 'index($5, dir) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
  while read -r mount; do umount -l "$mount" 2>/dev/null || log "umount $mount failed"; done

# kube-proxy's Service rules (its own --cleanup), kubelet's chains (it has no cleanup), then
# the node's egress guard.
[ -x "$KUBE_PROXY" ] && "$KUBE_PROXY" --cleanup >/dev/null 2>&1
for ipt in iptables ip6tables; do
  for builtin in INPUT OUTPUT; do
    while $ipt -w -D "$builtin" -j KUBE-FIREWALL 2>/dev/null; do :; done
  done
  for table in filter nat mangle; do
    for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
      $ipt -w -t "$table" -F "$chain" 2>/dev/null && $ipt -w -t "$table" -X "$chain" 2>/dev/null
    done
  done
done
while iptables -w -D FORWARD -j "$EGRESS_CHAIN" 2>/dev/null; do :; done
iptables -w -F "$EGRESS_CHAIN" 2>/dev/null
iptables -w -X "$EGRESS_CHAIN" 2>/dev/null
while iptables -w -t raw -D PREROUTING -j "$INGRESS_CHAIN" 2>/dev/null; do :; done
iptables -w -t raw -F "$INGRESS_CHAIN" 2>/dev/null
iptables -w -t raw -X "$INGRESS_CHAIN" 2>/dev/null

# The CNI bridge (the pods' veths went with their network namespaces).
ip link del "$BRIDGE" 2>/dev/null

# Cgroups kubelet made (cgroupfs driver: a kubepods tree in every v1 hierarchy), leaves first.
for tree in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
  [ -d "$tree" ] && find "$tree" -depth -type d -exec rmdir {} \; 2>/dev/null
done

# Kernel settings as they were before the node started.
if [ -f "$SYSCTLS" ]; then
  while read -r key value; do
    printf '%s\n' "$value" >"/proc/sys/$(printf '%s' "$key" | tr . /)" 2>/dev/null ||
      log "restoring $key=$value failed"
  done <"$SYSCTLS"
fi

ip addr del "$NODE_IP/32" dev lo 2>/dev/null

# libcni's cached results for the node's network (named mcall), then the directories outside
# its own that the node created (they did not exist before it started).
rm -f /var/lib/cni/results/mcall-* 2>/dev/null
for dir in $CREATED_DIRS; do rm -rf --one-file-system "$dir"; done
# The shims' socket directory, if nothing else uses it (rmdir refuses a non-empty one).
rmdir /run/containerd/s /run/containerd 2>/dev/null
log "done"
