"""The 64 MiB memory cgroup on cgroup v2, measured in a virtual machine.

Where this host's memory controller is bound to the cgroup v1 hierarchy (a
container or VM that cannot hand it to cgroup v2), `MemoryCgroup` can only
measure v1; the CPU quota is measured here on any host. This boots the
host's own Debian kernel (`apt-get install linux-image-amd64`) in QEMU on
an initramfs built here (busybox, the
measured binary, git, git daemon and the served repository), mounts cgroup2
with the memory and cpu controllers, and runs, each in a fresh child cgroup
with `memory.max` = 64 MiB and no swap: git-sidecar's one-time sync and
publish, `git clone --depth 1`, and git-sidecar again under a quota of one
CPU (`cpu.max`) to show its thread count follows the quota. The roots live
on an ext4 disk image (virtio), so page cache counts as on a node's disk.
Everything runs as root inside the VM, which has no network device: git
daemon listens on the VM's own 127.0.0.1.

QEMU emulates the CPU (TCG; KVM is not used, as nested KVM hangs on some
hosts): times inside are not comparable and are not reported, only the
cgroup's memory figures, OOM kills, exit codes, the published commit and the
thread count, which are the kernel's own accounting.
"""

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

MODULES = ["crc16", "crc32c_generic", "mbcache", "jbd2", "ext4", "virtio_ring", "virtio",
           "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "virtio_blk"]
BUSYBOX_APPLETS = ["sh", "head", "mount", "mkdir", "cat", "echo", "insmod", "ip", "sleep", "poweroff",
                   "readlink", "basename", "grep", "cut", "env", "sed", "tail", "tr", "rm", "awk", "touch"]
GIT_PROGRAMS = ["/usr/bin/git", "/usr/lib/git-core/git-daemon"]
TIMEOUT_S = 40 * 60


def missing_tools():
    """What to install for the VM, as apt-get package names with a reason."""
    missing = []
    if not shutil.which("qemu-system-x86_64"):
        missing.append("qemu-system-x86_64 (apt-get install qemu-system-x86)")
    if not kernel():
        missing.append("a kernel image in /boot with its modules (apt-get install linux-image-amd64)")
    if not shutil.which("busybox"):
        missing.append("busybox (apt-get install busybox-static)")
    for tool, package in (("mkfs.ext4", "e2fsprogs"), ("cpio", "cpio"), ("modinfo", "kmod")):
        if not shutil.which(tool):
            missing.append(f"{tool} (apt-get install {package})")
    return missing


def kernel():
    """(vmlinuz path, version) of the newest kernel in /boot that has its modules, or None."""
    found = []
    for image in glob.glob("/boot/vmlinuz-*"):
        version = image[len("/boot/vmlinuz-"):]
        if os.path.isdir(f"/lib/modules/{version}/kernel") and os.access(image, os.R_OK):
            found.append((image, version))

    def version_key(item):
        # Numbers compare as numbers (6.1.0-57 after 6.1.0-9), words as words.
        return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.-]", item[1])]

    return max(found, key=version_key) if found else None


def shared_libraries(program):
    """The shared libraries `program` loads (with the loader), from ldd; none if static."""
    out = subprocess.run(["ldd", program], capture_output=True, text=True).stdout
    return sorted({m.group(1) for m in re.finditer(r"(/\S+) \(0x", out)})


def copy_in(root, path):
    """Copies `path` to the same place below `root`, following links, once."""
    dest = root / path.lstrip("/")
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(path), dest)
    return dest


INIT = r"""#!/bin/sh
export PATH=/usr/bin:/bin LC_ALL=C
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in @MODULES@; do
  [ -f /lib/modules/$m.ko ] && { insmod /lib/modules/$m.ko || echo "RESULT error insmod $m"; }
done
mkdir -p /mnt /tmp /sys/fs/cgroup
mount -t ext4 /dev/vda /mnt || echo "RESULT error mount"
mount -t cgroup2 none /sys/fs/cgroup || echo "RESULT error cgroup2"
echo "+memory +cpu" > /sys/fs/cgroup/cgroup.subtree_control
echo "RESULT controllers $(cat /sys/fs/cgroup/cgroup.subtree_control)"
ip link set lo up
echo "RESULT step daemon"
HOME=/tmp git daemon --listen=127.0.0.1 --port=9418 --reuseaddr --export-all --base-path=/srv \
    --enable=upload-pack /srv >/mnt/daemon.log 2>&1 &
n=0
until HOME=/tmp git ls-remote git://127.0.0.1/docs.git HEAD >/dev/null 2>&1; do
  n=$((n + 1)); [ $n -gt 300 ] && echo "RESULT error daemon" && break; sleep 1
done

# sample CGROUP FILE: every 10 ms until /tmp/stop exists, the RssAnon, RssFile
# and RssShmem of each process in CGROUP, as "<reading> <pid> <key> <KiB>"
# (shell builtins only: no process is started per reading).
sample() {
  n=0
  until [ -e /tmp/stop ]; do
    n=$((n + 1))
    for p in $(cat $1/cgroup.procs); do
      while read -r k v _; do
        case $k in RssAnon:|RssFile:|RssShmem:) echo "$n $p $k $v" ;; esac
      done < /proc/$p/status 2>/dev/null
    done
    sleep 0.01
  done > $2
}

# The split of the process whose largest sampled total was the largest: each
# kind's own peak in it (lower bounds: a spike between readings is missed).
SPLIT='{ v[$2 " " $3] = ($4 + 0 > v[$2 " " $3] + 0) ? $4 : v[$2 " " $3]; t[$2 " " $1] += $4 }
END { for (k in t) { split(k, a, " "); if (t[k] > best) { best = t[k]; pid = a[1] } }
      printf "anon_kib=%d file_kib=%d shmem_kib=%d", v[pid " RssAnon:"], v[pid " RssFile:"], v[pid " RssShmem:"] }'

# run NAME CPU_MAX ROOT COMMAND...: COMMAND in a fresh cgroup limited to 64 MiB.
run() {
  name=$1 cpu=$2 root=$3; shift 3
  cg=/sys/fs/cgroup/$name
  mkdir $cg
  echo @LIMIT@ > $cg/memory.max
  echo 0 > $cg/memory.swap.max
  [ "$cpu" != max ] && echo "$cpu" > $cg/cpu.max
  rm -f /tmp/stop
  sample $cg /mnt/$name.samples &
  sampler=$!
  sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh $cg \
    /usr/bin/rusage /mnt/$name.usage "$@" >/mnt/$name.log 2>&1
  rc=$?
  touch /tmp/stop
  wait $sampler
  split=$(awk "$SPLIT" /mnt/$name.samples)
  events=$(grep -E '^(max|oom_kill) ' $cg/memory.events | sed 's/ /=/' | tr '\n' ' ')
  rss=$(cut -d' ' -f3 /mnt/$name.usage)
  threads=$(grep -o '"threads":[0-9]*' /mnt/$name.log | head -1 | cut -d: -f2)
  link=$(basename "$(readlink $root/site)" 2>/dev/null)
  cpumax=$(cat $cg/cpu.max | tr ' ' /)
  echo "RESULT run name=$name rc=$rc limit=$(cat $cg/memory.max) cpumax=$cpumax peak=$(cat $cg/memory.peak)" \
       "rss_kib=${rss:-none} $split $events threads=${threads:-none} link=${link:-none}"
  grep -v '"level":[1-9]' /mnt/$name.log | tail -2 | sed 's/^/RESULT log /'
}
export HOME=/nonexistent
sidecar() { echo /usr/bin/git-sidecar --repo git://127.0.0.1/docs.git --root $1 --link site --one-time -v 1; }
# The first sync publishes the tip's parent; the second run publishes the tip.
git --git-dir=/srv/docs.git update-ref refs/heads/@BRANCH@ @PARENT@
run sync max /mnt/sidecar $(sidecar /mnt/sidecar)
git --git-dir=/srv/docs.git update-ref refs/heads/@BRANCH@ @TIP@
run publish max /mnt/sidecar $(sidecar /mnt/sidecar)
run clone max /mnt/clone env HOME=/tmp git clone -q --depth 1 git://127.0.0.1/docs.git /mnt/clone
rm -rf /mnt/clone
run quota "100000 100000" /mnt/quota $(sidecar /mnt/quota)
echo "RESULT done"
poweroff -f
"""


class CgroupV2Vm:
    """Builds the VM's initramfs and disk in `work`, boots it, returns the runs' results."""

    def __init__(self, work, binary, launcher, git_dir, limit, log):
        """`launcher`: bench/rusage.rs built (busybox's `time` reports peak RSS four times too high)."""
        self.work, self.binary, self.launcher = Path(work), binary, launcher
        self.git_dir, self.limit, self.log = git_dir, limit, log
        git = ["git", f"--git-dir={git_dir}"]
        self.branch = subprocess.run([*git, "symbolic-ref", "--short", "HEAD"], capture_output=True, text=True,
                                     check=True).stdout.strip()
        self.tip, self.parent = subprocess.run([*git, "rev-parse", "HEAD", "HEAD~1"], capture_output=True,
                                               text=True, check=True).stdout.split()

    def run(self):
        image, version = kernel()
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        initramfs = self._initramfs(version)
        disk = self.work / "disk.img"
        with open(disk, "wb") as f:
            f.truncate(8 * 2**30)  # sparse: only what is written takes space
        # An inode per 4 KiB: each run writes tens of thousands of small files.
        subprocess.run(["mkfs.ext4", "-q", "-F", "-i", "4096", str(disk)], check=True)
        self.log(f"booting {image} in QEMU (TCG) for the cgroup v2 runs; takes minutes ...")
        console = self.work / "console.log"
        # `-cpu max` has RDRAND, which `random.trust_cpu` seeds the kernel's
        # random generator from: otherwise getrandom() may block for minutes
        # in an emulated machine, and with it git and git-sidecar.
        cmd = ["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2", "-m", "2048",
               "-display", "none", "-monitor", "none", "-serial", f"file:{console}", "-no-reboot",
               "-nic", "none", "-kernel", image, "-initrd", str(initramfs),
               "-drive", f"file={disk},format=raw,if=virtio",
               "-append", "console=ttyS0 rdinit=/init quiet panic=-1 random.trust_cpu=on"]
        try:
            subprocess.run(cmd, check=True, timeout=TIMEOUT_S)
        finally:
            os.unlink(disk)
        out = console.read_text(errors="replace")
        return {**parse(out), "tip": self.tip, "parent": self.parent}

    def _initramfs(self, version):
        root = self.work / "root"
        for d in ("bin", "proc", "sys", "dev", "mnt", "tmp", "lib/modules", "srv"):
            (root / d).mkdir(parents=True, exist_ok=True)
        busybox = copy_in(root, shutil.which("busybox"))
        shutil.move(str(busybox), root / "bin" / "busybox")
        for applet in BUSYBOX_APPLETS:
            (root / "bin" / applet).symlink_to("busybox")
        for module in MODULES:
            path = subprocess.run(["modinfo", "-k", version, "-n", module], capture_output=True,
                                  text=True, check=True).stdout.strip()
            if path.endswith(".ko"):  # not "(builtin)"
                shutil.copy2(path, root / "lib" / "modules" / f"{module}.ko")
        programs = [*GIT_PROGRAMS, shutil.which("busybox")]
        for program in GIT_PROGRAMS:
            copy_in(root, program)
        if os.path.isdir("/usr/share/git-core/templates"):
            shutil.copytree("/usr/share/git-core/templates", root / "usr/share/git-core/templates")
        shutil.copy2(self.binary, root / "usr" / "bin" / "git-sidecar")
        shutil.copy2(self.launcher, root / "usr" / "bin" / "rusage")
        programs += [str(self.binary), str(self.launcher)]
        for lib in {lib for p in programs for lib in shared_libraries(p)}:
            copy_in(root, lib)
        shutil.copytree(self.git_dir, root / "srv" / "docs.git", symlinks=True)
        init = root / "init"
        values = {"MODULES": " ".join(MODULES), "LIMIT": str(self.limit), "BRANCH": self.branch,
                  "TIP": self.tip, "PARENT": self.parent}
        text = INIT
        for key, value in values.items():
            text = text.replace(f"@{key}@", value)
        init.write_text(text)
        init.chmod(0o755)
        cpio = self.work / "initramfs.cpio"
        files = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
        with open(cpio, "wb") as f:
            # Owned by root inside the VM, whoever builds it (git refuses a
            # repository owned by another user).
            subprocess.run(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"], cwd=root, input=files, stdout=f,
                           check=True)
        shutil.rmtree(root)
        return cpio


def parse(console):
    """{'runs': {name: {rc, peak, oom, threads, link}}, 'logs': {...}, 'errors': [...], 'done': bool}."""
    result = {"runs": {}, "errors": [], "done": False, "controllers": "", "logs": []}
    for line in console.splitlines():
        line = line.strip()
        if not line.startswith("RESULT "):
            continue
        kind, _, rest = line[len("RESULT "):].partition(" ")
        if kind == "run":
            fields = dict(f.split("=", 1) for f in rest.split())
            result["runs"][fields.pop("name")] = fields
        elif kind == "error":
            result["errors"].append(rest)
        elif kind == "controllers":
            result["controllers"] = rest
        elif kind == "log":
            result["logs"].append(rest)
        elif kind == "done":
            result["done"] = True
    return result
