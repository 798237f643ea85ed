#!/usr/bin/env bash
# Builds the image of docker/Dockerfile and checks it running, on a machine without a Docker
# engine or a container registry (this project's machines and CI): with podman, the base images
# made locally when missing. As root, from anywhere in the repository:
#
#   docker/check.sh
#
# 1. Tools: podman, runc, debootstrap, jq and PostgreSQL, installed from Debian when missing.
# 2. Stand-ins for the two base images the Dockerfile names, when missing (real ones pulled
#    beforehand are used as they are): debian:bookworm-slim from `debootstrap --variant=minbase
#    bookworm` against this machine's Debian mirror, slimmed as the official image is;
#    rust:1.95-slim-bookworm from it plus this machine's Rust toolchain (which must be 1.95),
#    with the official image's RUSTUP_HOME, CARGO_HOME and PATH, gcc and libc6-dev.
# 3. Builds `image1` (SQLite) and `image1-pg` (FEATURES=postgres), then the image again from a
#    copy of the build context with a one-line change to the docs (every layer cached: the
#    same image) and to a source file (the dependencies' layer cached, only the workspace's
#    crates compiled).
# 4. Runs them and checks: /healthz on the published port, the HEALTHCHECK command, a robot
#    (target/debug/rpa-robot) receiving a job and reporting it, the non-root user and fixed
#    ids, the data in the named volumes, `stop` exiting 0 within 2 s, the data kept across a
#    restart and in a replacement container, the health check finding the server's port
#    given by PORT, by --listen and behind --init, a bind-mounted folder owned by
#    10001:10001 (and a root-owned one refused with exit code 2), and the PostgreSQL image
#    against a private cluster (.ci/postgres) on CHECK_PG_PORT, or a free port.
#
# Every check prints `ok` or `FAIL` with what it checked; the run ends with the build times,
# the image sizes and a count, and exits non-zero when a check failed. Containers, volumes,
# the cluster and the images the builds left behind untagged (the multi-GB build stages) are
# removed on exit, however the run ends; image1, image1-pg and the base images are kept.
# KEEP_BUILD_CACHE=1 keeps the build stages too, so that the next build is a warm one;
# CHECK_BUILD=0 builds nothing and checks the image1 and image1-pg already there.
#
# How podman runs here: builds with `--isolation=chroot --network=host` (the default isolation
# cannot set up cgroups in this machine's sandbox) and `--format docker` (the OCI format has
# no HEALTHCHECK); containers with `--runtime runc` and explicit nofile/nproc limits. HTTPS
# from inside a build (cargo's downloads) goes through a proxy that only this machine's CA
# bundle trusts: the bundle is mounted into the build, read-only, never copied into an image.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

prefix=rpa-check                       # names of this run's containers and volumes
ca_bundle=/etc/ssl/certs/ca-certificates.crt
debian_image=docker.io/library/debian:bookworm-slim
rust_image=docker.io/library/rust:1.95-slim-bookworm
rust_version=1.95
started=$(date +%s)

passed=0 failed=0
ok() { passed=$((passed + 1)); printf 'ok   - %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL - %s\n' "$*"; }
check() { # check DESCRIPTION COMMAND...: ok when the command succeeds
    local what=$1; shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}
section() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
die() { printf 'check.sh: %s\n' "$*" >&2; exit 1; }

# --- 1. tools ------------------------------------------------------------------------------
section "tools"
[ "$(id -u)" = 0 ] || die "run as root (podman's storage and the bind-mount checks need it)"
missing=()
for tool in podman runc debootstrap jq curl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
# .ci/postgres runs the cluster the PostgreSQL image is checked against.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
fi
podman --version
[ -r "$ca_bundle" ] || die "$ca_bundle is missing (Debian's ca-certificates)"

build_plain() {
    podman build --isolation=chroot --network=host --pull=never --format docker "$@"
}
build() { build_plain --volume "$ca_bundle:$ca_bundle:ro" "$@"; }
run() {
    podman run --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "$@"
}

work=$(mktemp -d /tmp/rpa-docker-check.XXXXXX)
dangling_before=$(podman images --all --quiet --no-trunc --filter dangling=true | sort -u)
pg_dir=""
cleanup() {
    local status=$?
    set +e
    section "cleanup"
    podman ps --all --format '{{.Names}}' | grep "^$prefix-" | xargs -r podman rm --force --volumes --time 0 >/dev/null 2>&1
    podman volume ls --format '{{.Name}}' | grep "^$prefix-" | xargs -r podman volume rm --force >/dev/null 2>&1
    podman rmi --force "$prefix-docs" "$prefix-source" >/dev/null 2>&1
    [ -n "$pg_dir" ] && { .ci/postgres stop "$pg_dir" >/dev/null 2>&1; rm -rf "$pg_dir" "$pg_dir.err"; }
    if [ "${KEEP_BUILD_CACHE:-0}" != 1 ]; then
        # Only what this run left untagged: the build stages, then the layers under them.
        for _ in 1 2 3; do
            podman images --all --quiet --no-trunc --filter dangling=true | sort -u \
                | comm -13 <(echo "$dangling_before") - | xargs -r podman rmi --force >/dev/null 2>&1
        done
    fi
    rm -rf "$work"
    echo "removed this run's containers, volumes and build stages"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 2. base images ------------------------------------------------------------------------
section "base images"
grep -q "^FROM ${debian_image#docker.io/library/}\b" docker/Dockerfile \
    && grep -q "^FROM ${rust_image#docker.io/library/} " docker/Dockerfile \
    || die "docker/Dockerfile no longer names $debian_image and $rust_image: update check.sh"

if podman image exists "$debian_image"; then
    echo "$debian_image: present"
else
    mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
    [ -n "$mirror" ] || die "no Debian mirror configured in /etc/apt"
    echo "$debian_image: debootstrap --variant=minbase bookworm from $mirror"
    root=$work/rootfs
    debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -n 20 "$work/debootstrap.log"; die "debootstrap failed"; }
    # As the official slim image: no downloaded packages, lists, manuals or translations, and
    # dpkg told not to install them again.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
        "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
    echo 'APT::Install-Recommends "false";' >"$root/etc/apt/apt.conf.d/docker-no-recommends"
    tar -C "$root" -c . | podman import \
        --change 'CMD ["bash"]' \
        --change 'LABEL org.opencontainers.image.description="stand-in made by docker/check.sh"' \
        - "$debian_image" >/dev/null
    rm -rf "$root"
fi

if podman image exists "$rust_image"; then
    echo "$rust_image: present"
else
    rustc --version | grep -q "^rustc $rust_version\." \
        || die "this machine's rustc is $(rustc --version), the image needs $rust_version"
    sysroot=$(rustc --print sysroot)
    toolchain=$(basename "$sysroot")
    toolchain=$(rustc --version | awk '{print $2}')-${toolchain#*-}
    echo "$rust_image: $debian_image with $(rustc --version) from $sysroot"
    context=$work/rust
    mkdir -p "$context/rustup/toolchains/$toolchain" "$context/cargo/bin"
    # Hard links: nothing is copied twice, and the build only reads them.
    cp -al "$sysroot/bin" "$sysroot/lib" "$context/rustup/toolchains/$toolchain/"
    printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\n' "$toolchain" \
        >"$context/rustup/settings.toml"
    cp "$(command -v rustup)" "$context/cargo/bin/rustup"
    for proxy in cargo cargo-clippy cargo-fmt clippy-driver rustc rustdoc rustfmt; do
        ln -s rustup "$context/cargo/bin/$proxy"
    done
    cat >"$context/Containerfile" <<EOF
FROM $debian_image
LABEL org.opencontainers.image.description="stand-in made by docker/check.sh"
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    RUST_VERSION=$(rustc --version | awk '{print $2}')
RUN apt-get update \\
    && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \\
    && rm -rf /var/lib/apt/lists/*
COPY rustup /usr/local/rustup
COPY cargo /usr/local/cargo
RUN cargo --version && rustc --version
EOF
    # No CA bundle mounted here: apt's downloads are plain HTTP, and ca-certificates must be
    # able to write its own bundle.
    build_plain --layers=false -t "$rust_image" "$context" >"$work/rust-image.log" 2>&1 \
        || { tail -n 20 "$work/rust-image.log"; die "the Rust stand-in did not build"; }
    rm -rf "$context"
fi

# --- 3. builds -----------------------------------------------------------------------------
section "builds"
timed_build() { # timed_build LOG ARGS...: sets $seconds
    local log=$1; shift
    local start; start=$(date +%s)
    if ! build "$@" >"$log" 2>&1; then
        tail -n 30 "$log"
        die "build failed: podman build $*"
    fi
    seconds=$(( $(date +%s) - start ))
}
size_of() { podman image inspect --format '{{.Size}}' "$1" | awk '{printf "%.1f MB", $1 / 1e6}'; }

if [ "${CHECK_BUILD:-1}" = 0 ]; then
    podman image exists image1 && podman image exists image1-pg \
        || die "CHECK_BUILD=0 checks the images built before: image1 and image1-pg are missing"
    echo "CHECK_BUILD=0: checking the image1 and image1-pg built before"
    sqlite_seconds="-" postgres_seconds="-" docs_seconds="-" source_seconds="-"
else
    timed_build "$work/build-sqlite.log" -t image1 -f docker/Dockerfile .
    sqlite_seconds=$seconds
    ok "image1 built (SQLite) in ${sqlite_seconds} s: $(size_of image1)"

    timed_build "$work/build-postgres.log" --build-arg FEATURES=postgres -t image1-pg \
        -f docker/Dockerfile .
    postgres_seconds=$seconds
    ok "image1-pg built (FEATURES=postgres) in ${postgres_seconds} s: $(size_of image1-pg)"

    # The build context again, as a copy (tracked and untracked files, as `docker build .` sees
    # them), with one line added.
    context=$work/context
    mkdir "$context"
    git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$context"
    echo "A one-line change." >>"$context/README.md"
    timed_build "$work/build-docs.log" -t "$prefix-docs" -f docker/Dockerfile "$context"
    docs_seconds=$seconds
    check "a change to the docs rebuilds nothing: the same image, in ${docs_seconds} s" \
        [ "$(podman image inspect --format '{{.Id}}' "$prefix-docs")" = \
          "$(podman image inspect --format '{{.Id}}' image1)" ]

    echo "// A one-line change." >>"$context/bin/socket-server/src/main.rs"
    timed_build "$work/build-source.log" -t "$prefix-source" -f docker/Dockerfile "$context"
    source_seconds=$seconds
    # The dependencies' layer is the first `cargo build` step: it must come from the cache.
    dependencies_cached() {
        grep -A1 'RUN cargo build --release' "$work/build-source.log" | head -n 2 | tail -n 1 \
            | grep -q '^--> Using cache'
    }
    check "a change to a source file keeps the dependencies' layer cached" dependencies_cached
    compiled=$(sed -n 's/^ *Compiling \([^ ]*\) .*/\1/p' "$work/build-source.log" | sort -u | tr '\n' ' ')
    only_workspace() {
        [ -n "$compiled" ] && ! tr ' ' '\n' <<<"$compiled" | grep -v -e '^$' -e '^rpa-' -e '^socket-server$' -q
    }
    check "and compiles only the workspace's crates, in ${source_seconds} s: $compiled" only_workspace
fi

# --- 4. running ----------------------------------------------------------------------------
cargo build --quiet -p rpa-robot
robot_bin=$repo/target/debug/rpa-robot

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
published_port() { podman port "$1" "$2/tcp" | head -n 1 | sed 's/.*://'; }
# wait_listening NAME PORT: until the container's log says it listens (30 s at most)
wait_listening() {
    local i
    for i in $(seq 300); do
        podman logs "$1" 2>/dev/null | grep -q "^listening on .*:$2\$" && return 0
        [ "$(podman inspect --format '{{.State.Running}}' "$1")" = true ] || break
        sleep 0.1
    done
    echo "--- log of $1:"; podman logs "$1" 2>&1 | tail -n 20
    return 1
}
# http METHOD URL [BODY]: prints the body and, on the last line, the status
http() {
    curl -s -m 10 -X "$1" -H 'content-type: application/json' ${3:+-d "$3"} \
        -w '\n%{http_code}' "$2"
}
answers() { [ "$(curl -s -m 5 "http://127.0.0.1:$1/healthz")" = '{"status":"ok"}' ]; }
healthy() { podman healthcheck run "$1" >/dev/null 2>&1; }
# not_answering_inside NAME PORT: the binary's own check, inside the container, fails there
not_answering_inside() {
    ! podman exec "$1" socket-server --healthcheck --listen "127.0.0.1:$2" >/dev/null 2>&1
}
trigger() { # trigger PORT ADDRESS: a job for now; prints its id
    local body
    body='{"Package": {"package_name": "package-x74s-eg", "path": "cloudinary/studioPackages/pkg1-x74s.std"},
           "Robot": {"robot_name": "CHECK-1", "robot_address": "'"$2"'"},
           "Schedule": {"at": "'"$(date -u +%FT%TZ)"'"}}'
    http POST "http://127.0.0.1:$1/api/jobs" "$body" >"$work/trigger.out"
    [ "$(tail -n 1 "$work/trigger.out")" = 201 ] || { cat "$work/trigger.out"; return 1; }
    head -n -1 "$work/trigger.out" | jq -r .id
}
job_status() { # job_status PORT ID
    http GET "http://127.0.0.1:$1/api/jobs/$2" | head -n -1 | jq -r .status
}
# robot_gets_a_job PORT: a robot connects, a job is triggered for it, it runs and reports it
robot_gets_a_job() {
    local port=$1 address=001AFFDB45C2 log=$work/robot-$1.log robot id i
    timeout 60 "$robot_bin" --url "ws://127.0.0.1:$port/" --name CHECK-1 --address "$address" \
        --exit-after 1 >"$log" 2>&1 &
    robot=$!
    for i in $(seq 100); do grep -q '"registered"' "$log" && break; sleep 0.1; done
    grep -q '"registered"' "$log" || { cat "$log"; kill "$robot"; return 1; }
    id=$(trigger "$port" "$address") || { kill "$robot"; return 1; }
    wait "$robot" || { cat "$log"; return 1; }
    grep -q "\"event\":\"reported\",\"job_id\":$id" "$log" || { cat "$log"; return 1; }
    for i in $(seq 100); do
        [ "$(job_status "$port" "$id")" = Succeeded ] && { job_id=$id; return 0; }
        sleep 0.1
    done
    echo "job $id: $(job_status "$port" "$id")"; return 1
}

section "image1: configuration"
config=$(podman image inspect --format '{{json .Config}}' image1)
check "runs as 10001:10001" [ "$(jq -r .User <<<"$config")" = 10001:10001 ]
no_listen_setting() { ! jq -r '.Env[]' <<<"$config" | grep -q -e ^SOCKET_SERVER_LISTEN= -e ^PORT=; }
check "sets no listen address (PORT and --listen decide)" no_listen_setting
check "exposes 4000 and has the three volumes" \
    [ "$(jq -c '[(.ExposedPorts | keys), (.Volumes | keys)]' <<<"$config")" = \
      '[["4000/tcp"],["/app/data","/app/packages","/app/serverLogs"]]' ]
has_healthcheck() {
    podman image inspect --format '{{.HealthCheck.Test}}' image1 | grep -q -- --healthcheck
}
check "keeps its HEALTHCHECK" has_healthcheck

section "image1: a server with named volumes"
c1=$prefix-c1
volumes=(-v "$prefix-data:/app/data" -v "$prefix-packages:/app/packages" -v "$prefix-logs:/app/serverLogs")
run -d --name "$c1" -p 127.0.0.1::4000 "${volumes[@]}" image1 >/dev/null 2>>"$work/podman.log"
wait_listening "$c1" 4000 || die "the container did not start"
port=$(published_port "$c1" 4000)
check "/healthz answers on the published port (127.0.0.1:$port -> 4000)" answers "$port"
check "the HEALTHCHECK command passes (podman healthcheck run)" healthy "$c1"
check "and fails for a port nothing listens on" not_answering_inside "$c1" 4999
check "the server runs as uid 10001, gid 10001" \
    [ "$(podman exec "$c1" sh -c 'id -u; id -g' | tr '\n' :)" = 10001:10001: ]
job_id=""
check "a robot receives a job and reports it (the job Succeeded)" robot_gets_a_job "$port"
mountpoint() { podman volume inspect --format '{{.Mountpoint}}' "$prefix-$1"; }
check "the database is in the data volume" test -s "$(mountpoint data)/socket-server.db"
check "the package file is in the packages volume" \
    test -s "$(mountpoint packages)/package-x74s-eg_${job_id:-none}"
has_log() { compgen -G "$(mountpoint logs)/*.log" >/dev/null; }
check "the day's log is in the logs volume" has_log

section "image1: stop, restart, replacement"
start_ns=$(date +%s%N)
podman stop --time 10 "$c1" >/dev/null 2>>"$work/podman.log"
stop_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
check "stop exits 0 (SIGTERM), in ${stop_ms} ms (within 2 s)" \
    [ "$(podman inspect --format '{{.State.ExitCode}}' "$c1")" = 0 -a "$stop_ms" -lt 2000 ]
podman start "$c1" >/dev/null 2>>"$work/podman.log"
sleep 0.5
port=$(published_port "$c1" 4000)
for _ in $(seq 300); do curl -s -m 1 -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
check "after a restart, the job is still there" \
    [ "$(job_status "$port" "${job_id:-0}")" = Succeeded ]
podman rm --force --volumes --time 10 "$c1" >/dev/null 2>>"$work/podman.log"
run -d --name "$prefix-c2" -p 127.0.0.1::4000 "${volumes[@]}" image1 >/dev/null 2>>"$work/podman.log"
wait_listening "$prefix-c2" 4000 || die "the replacement container did not start"
port=$(published_port "$prefix-c2" 4000)
check "a replacement container on the same named volumes has it too" \
    [ "$(job_status "$port" "${job_id:-0}")" = Succeeded ]
podman rm --force --volumes --time 10 "$prefix-c2" >/dev/null 2>>"$work/podman.log"

section "image1: the health check finds the server's port"
# run_on NAME PORT ARGS...: a container whose server listens on PORT
run_on() {
    local name=$1 port=$2; shift 2
    run -d --name "$name" -p "127.0.0.1::$port" "$@" >/dev/null 2>>"$work/podman.log"
    wait_listening "$name" "$port"
}
n=0
for case in "PORT=5000|-e PORT=5000 image1" \
            "--listen 0.0.0.0:5000|image1 --listen 0.0.0.0:5000" \
            "SOCKET_SERVER_LISTEN beats PORT|-e SOCKET_SERVER_LISTEN=0.0.0.0:5000 -e PORT=4000 image1" \
            "--listen, behind --init|--init image1 --listen 0.0.0.0:5000"; do
    what=${case%%|*}
    name=$prefix-port-$((++n))
    read -r -a args <<<"${case#*|}"
    if run_on "$name" 5000 "${args[@]}"; then
        port=$(published_port "$name" 5000)
        check "$what: served on 5000 (published as $port)" answers "$port"
        check "$what: the HEALTHCHECK passes" healthy "$name"
        check "$what: nothing on 4000" not_answering_inside "$name" 4000
    else
        fail "$what: the server did not start"
    fi
    podman rm --force --volumes --time 0 "$name" >/dev/null 2>&1
done

section "image1: a bind-mounted data folder"
owned=$work/owned
mkdir "$owned"
chown 10001:10001 "$owned"
if run_on "$prefix-bind" 4000 -v "$owned:/app/data" image1; then
    check "a folder owned by 10001:10001 holds the database" test -s "$owned/socket-server.db"
    check "the database file belongs to 10001" [ "$(stat -c %u "$owned/socket-server.db")" = 10001 ]
else
    fail "a folder owned by 10001:10001: the server did not start"
fi
podman rm --force --volumes --time 0 "$prefix-bind" >/dev/null 2>&1
rootowned=$work/root-owned
mkdir "$rootowned"
run -d --name "$prefix-root" -v "$rootowned:/app/data" image1 >/dev/null 2>>"$work/podman.log"
code=$(timeout 30 podman wait "$prefix-root" 2>/dev/null || echo "still running")
podman logs "$prefix-root" >"$work/root-owned.log" 2>&1
names_the_folder() { grep -q "/app/data" "$work/root-owned.log"; }
check "a root-owned folder stops the start with exit code 2 (here: $code)" [ "$code" = 2 ]
check "with a line naming the folder" names_the_folder
grep -m 1 "^socket-server:" "$work/root-owned.log" | sed 's/^/       /'
podman rm --force --volumes --time 0 "$prefix-root" >/dev/null 2>&1

section "image1-pg: against PostgreSQL"
# Not under $work: the cluster's owner, `postgres`, must be able to reach its folder. A port
# picked free can be taken before the cluster binds it: then another one.
url=""
for _ in 1 2 3; do
    [ -n "$pg_dir" ] && rm -rf "$pg_dir"
    pg_dir=$(mktemp -d /tmp/rpa-docker-check-pg.XXXXXX)
    url=$(.ci/postgres start "$pg_dir" "${CHECK_PG_PORT:-$(free_port)}" 2>"$pg_dir.err") && break
    url=""
    [ -n "${CHECK_PG_PORT:-}" ] && break
done
if [ -z "$url" ]; then
    cat "$pg_dir.err" "$pg_dir/server.log" 2>/dev/null | tail -n 5
    die "the PostgreSQL cluster did not start (.ci/postgres)"
fi
rm -f "$pg_dir.err"
psql -q "$url/postgres" -c 'CREATE DATABASE rpa_docker_check' >/dev/null
pg_listen=$(free_port)
pg=$prefix-pg
# The cluster listens on the host's loopback: the container shares the host's network.
run -d --name "$pg" --network host -e "DATABASE_URL=$url/rpa_docker_check" image1-pg \
    --listen "127.0.0.1:$pg_listen" >/dev/null 2>>"$work/podman.log"
if wait_listening "$pg" "$pg_listen"; then
    ready() { [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz")" = 200 ]; }
    check "/readyz answers 200 (database reachable, scheduler running)" ready "$pg_listen"
    check "the HEALTHCHECK passes (port from --listen)" healthy "$pg"
    check "a robot receives a job and reports it (the job Succeeded)" robot_gets_a_job "$pg_listen"
    in_postgres() {
        [ "$(psql -tA "$url/rpa_docker_check" -c "SELECT status FROM jobs WHERE id = ${job_id:-0}")" \
            = Succeeded ]
    }
    check "the job is in PostgreSQL" in_postgres
    start_ns=$(date +%s%N)
    podman stop --time 10 "$pg" >/dev/null 2>>"$work/podman.log"
    stop_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
    check "stop exits 0, in ${stop_ms} ms" \
        [ "$(podman inspect --format '{{.State.ExitCode}}' "$pg")" = 0 -a "$stop_ms" -lt 2000 ]
else
    fail "the PostgreSQL-backed server did not start"
fi

section "figures"
echo "image1 (SQLite):          $(size_of image1), cold build ${sqlite_seconds} s"
echo "image1-pg (postgres):     $(size_of image1-pg), cold build ${postgres_seconds} s"
echo "rebuild after a docs change:   ${docs_seconds} s (every layer cached)"
echo "rebuild after a source change: ${source_seconds} s (dependencies cached)"
echo "this check: $(( $(date +%s) - started )) s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
