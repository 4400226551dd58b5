#!/usr/bin/env bash
# Fetch Debian bookworm's i386 `686` kernel and busybox-static and build the initramfs that
# `bt86 run --kernel` boots (issue 6). Nothing fetched here is committed: it all lands in
# $BT86_LINUX_DIR (default: guest-images/linux/, which .gitignore excludes).
#
# The host's apt is untouched: apt runs with a private sources list, state, cache and status
# file under $BT86_LINUX_DIR/apt, with i386 as its only architecture.
#
# Output:
#   $BT86_LINUX_DIR/vmlinuz         the kernel (a bzImage), from linux-image-<version>-686
#   $BT86_LINUX_DIR/initramfs.cpio  a reproducible newc archive: busybox and /init
#   $BT86_LINUX_DIR/VERSIONS        the package versions used
#
# /init prints BT86-READY, runs a shell arithmetic loop and `md5sum` of 32 MiB of /dev/zero,
# prints the results and BT86-DONE, then powers off (bt86 exits 0). With `guest_shell=1` on the
# kernel command line it starts an interactive shell on the console instead.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${BT86_LINUX_DIR:-$here/guest-images/linux}"
mirror="${BT86_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security="${BT86_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}"
suite="${BT86_DEBIAN_SUITE:-bookworm}"

for tool in apt-get apt-cache dpkg-deb cargo; do
    command -v "$tool" >/dev/null || { echo "fetch-linux-guest: '$tool' is required but not on PATH" >&2; exit 2; }
done

apt_dir="$out/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/etc/preferences.d" \
    "$apt_dir/etc/apt.conf.d" "$apt_dir/debs"
: > "$apt_dir/status"
cat > "$apt_dir/sources.list" <<SOURCES
deb [arch=i386 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main
deb [arch=i386 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite-updates main
deb [arch=i386 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $security $suite-security main
SOURCES

apt_opts=(
    -o APT::Architecture=i386
    -o APT::Architectures=i386
    -o Dir::State::Lists="$apt_dir/lists"
    -o Dir::State::Status="$apt_dir/status"
    -o Dir::Cache="$apt_dir/cache"
    -o Dir::Etc::SourceList="$apt_dir/sources.list"
    -o Dir::Etc::SourceParts="$apt_dir/etc/apt.conf.d"
    -o Dir::Etc::Preferences="$apt_dir/etc/preferences"
    -o Dir::Etc::PreferencesParts="$apt_dir/etc/preferences.d"
    -o Debug::NoLocking=1
    -o APT::Sandbox::User=root
)

echo "fetch-linux-guest: updating the private i386 package lists ($suite)"
# A mirror caught mid-sync fails one index now and then: try again, and go on with what
# arrived as long as the main suite's index did (the metapackage and its kernel are then
# resolved consistently from the indexes present).
for attempt in 1 2 3; do
    if apt-get "${apt_opts[@]}" -qq update; then break; fi
    echo "fetch-linux-guest: apt-get update failed (attempt $attempt)" >&2
    sleep 3
done
if ! ls "$apt_dir"/lists/*_dists_"${suite}"_main_binary-i386_Packages* >/dev/null 2>&1; then
    echo "fetch-linux-guest: no package index for $suite main (i386) from $mirror" >&2
    exit 1
fi

# linux-image-686 is a metapackage: resolve it to the versioned kernel package it depends on.
kernel_pkg="$(apt-cache "${apt_opts[@]}" depends linux-image-686 \
    | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-686\)$/\1/p' | head -n1)"
if [ -z "$kernel_pkg" ]; then
    echo "fetch-linux-guest: could not resolve linux-image-686 to a versioned kernel package" >&2
    exit 1
fi
echo "fetch-linux-guest: downloading $kernel_pkg and busybox-static"
(cd "$apt_dir/debs" && rm -f ./*.deb && apt-get "${apt_opts[@]}" -qq download "$kernel_pkg" busybox-static)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for deb in "$apt_dir"/debs/*.deb; do
    dpkg-deb -x "$deb" "$work/extract"
done
kernel="$(ls "$work"/extract/boot/vmlinuz-* | head -n1)"
cp "$kernel" "$out/vmlinuz"

root="$work/root"
mkdir -p "$root/bin"
cp "$work/extract/bin/busybox" "$root/bin/busybox"
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "BT86-READY"
if grep -q 'guest_shell=1' /proc/cmdline; then
    echo "bt86: interactive shell (type 'poweroff -f' to stop the machine)"
    exec setsid cttyhack sh -l
fi
i=0
sum=0
while [ "$i" -lt 20000 ]; do
    sum=$(( (sum + i * i) % 1000000007 ))
    i=$((i + 1))
done
echo "arith: $sum"
echo "md5: $(dd if=/dev/zero bs=1M count=32 2>/dev/null | md5sum)"
echo "BT86-DONE"
poweroff -f
INIT
chmod 755 "$root/init"

echo "fetch-linux-guest: building the initramfs"
cargo run --quiet --release --manifest-path "$here/Cargo.toml" -p guest-images --example mkinitramfs -- \
    "$root" "$out/initramfs.cpio"

{
    echo "kernel: $kernel_pkg $(dpkg-deb -f "$apt_dir"/debs/linux-image-*.deb Version)"
    echo "busybox-static: $(dpkg-deb -f "$apt_dir"/debs/busybox-static_*.deb Version)"
} > "$out/VERSIONS"
cat "$out/VERSIONS"
echo "fetch-linux-guest: done: $out/vmlinuz and $out/initramfs.cpio"
