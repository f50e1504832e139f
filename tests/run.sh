#!/usr/bin/env bash
# Runs anycastd's whole test suite. As root on Debian it first installs what
# the integration tests need (the apt and pip packages below: real BIRD 2,
# GoBGP, FRR, ExaBGP, dnsmasq, tftpd-hpa, chrony, Prometheus' promtool,
# headless Chromium for the status page...);
# elsewhere it checks they are there and says what is missing.
#
# Meant for CI or a disposable machine: installing chrony removes
# systemd-timesyncd. Services the packages would start (bird, frr, chrony,
# dnsmasq, tftpd-hpa, prometheus...) are kept from starting during the
# install and left disabled: the tests start their own instances.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(bird2 gobgpd frr dnsmasq tftpd-hpa chrony prometheus systemd mandoc groff-base iproute2 procps openssl python3 chromium-headless-shell)
pip_packages=("exabgp>=5.0,<6")

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=()
    for p in "${apt_packages[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq
        # Debian starts a package's service on install unless policy-rc.d
        # says no (exit 101); say no for this install only.
        policy=/usr/sbin/policy-rc.d
        own_policy=
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
        [ -n "$own_policy" ] && rm -f "$policy"
        if [ -d /run/systemd/system ]; then
            for unit in bird frr chrony dnsmasq tftpd-hpa prometheus prometheus-node-exporter; do
                systemctl disable --now "$unit" >/dev/null 2>&1 || true
            done
        fi
    fi
    if ! command -v exabgp >/dev/null; then
        python3 -m pip --version >/dev/null 2>&1 ||
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip
        # Debian's own python3 refuses pip installs (PEP 668); a pyenv or
        # venv python3 takes them as they are.
        python3 -m pip install -q "${pip_packages[@]}" ||
            python3 -m pip install -q --break-system-packages "${pip_packages[@]}"
    fi
    # pyenv installs console scripts behind shims that need a rehash.
    command -v pyenv >/dev/null && pyenv rehash || true
fi
for tool in bird birdc exabgp gobgpd gobgp /usr/lib/frr/bgpd /usr/lib/frr/bfdd /usr/lib/frr/zebra vtysh dnsmasq in.tftpd chronyd promtool \
    systemd-analyze mandoc groff ip ss sysctl setpriv openssl python3 chromium-headless-shell; do
    command -v "$tool" >/dev/null || {
        echo "missing $tool: install ${apt_packages[*]} (apt) and ${pip_packages[*]} (pip), as root" >&2
        exit 1
    }
done

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
# The fuzz targets (fuzz/, a crate of their own run by `cargo fuzz`) must keep
# compiling against the library they exercise.
cargo check --manifest-path fuzz/Cargo.toml --locked --bins
