#!/bin/busybox sh
# PID 1 of the emulated KVM host (L1). Loads kvm-amd and 9p, mounts the
# host's root filesystem read-only at /host, mounts the control share and the
# writable shares at their host paths, runs the command in a chroot, records
# its exit status and powers off. Written by tests/kvmhost/run.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# Loopback up: tests serve a registry on 127.0.0.1 inside (down by default
# here, which made every 127.0.0.1 connection fail).
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up 2>/dev/null
say() { echo "kvmhost-init: $*" > /dev/ttyS0; }
# kvm: nx_huge_pages=never. The iTLB-multihit mitigation it controls is for
# Intel CPUs; this host is an emulated AMD EPYC, where Linux 6.1 leaves it off
# but still starts a "kvm-nx-lpage-recovery" kthread for every VM, which under
# TCG was 18-25 ms of each KVM_CREATE_VM (measured with ftrace's
# function_graph: kvm_vm_create_worker_thread). A host with hardware KVM on an
# AMD CPU can set the same (docs/restore.md).
for m in $(cat /modules/order); do
	case $m in
	kvm) args="nx_huge_pages=never" ;;
	*) args="" ;;
	esac
	insmod /modules/$m.ko $args 2>/dev/null || say "insmod $m $args failed"
done
ctl=$(sed -n 's/.*sm\.ctl=\([^ ]*\).*/\1/p' /proc/cmdline)
mkdir -p /host
if ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /host; then
	say "cannot mount the host root over 9p"
	poweroff -f
fi
# /tmp: the host's /tmp as the read-only lower layer of an overlay whose
# upper layer is a tmpfs, so paths under the host's /tmp (a clone, a build
# tree) are visible and the command can still write (privately) there.
mkdir -p /ovl
mount -t tmpfs -o mode=755 tmpfs /ovl
mkdir -p /ovl/upper /ovl/work
chmod 1777 /ovl/upper
if ! mount -t overlay -o lowerdir=/host/tmp,upperdir=/ovl/upper,workdir=/ovl/work overlay /host/tmp; then
	say "overlay on /tmp failed; /tmp is an empty tmpfs"
	mount -t tmpfs -o mode=1777 tmpfs /host/tmp
fi
mount -t tmpfs tmpfs /host/run
mount --bind /dev /host/dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /host/dev/pts
mount -t tmpfs tmpfs /host/dev/shm
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mkdir -p "/host$ctl"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 smctl "/host$ctl" || { say "cannot mount control share"; poweroff -f; }
i=0
while [ -f "/host$ctl/rw$i" ]; do
	p=$(cat "/host$ctl/rw$i")
	mkdir -p "/host$p" 2>/dev/null
	mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 "rw$i" "/host$p" || say "cannot mount $p"
	i=$((i + 1))
done
[ -c /dev/kvm ] || say "no /dev/kvm in the emulated host (kvm-amd did not load)"
# Heartbeat for the harness: if this host's timers die (seen under TCG: QEMU
# idle, every process asleep for good), the harness sees it stop and retries.
( while :; do : > "/host$ctl/heartbeat"; sleep 5; done ) &
chroot /host /bin/bash "$ctl/cmd.sh" > "/host$ctl/stdout" 2> "/host$ctl/stderr" < /dev/null
echo $? > "/host$ctl/rc"
sync
poweroff -f
