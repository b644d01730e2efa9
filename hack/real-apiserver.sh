#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, without Docker, built from Debian's own packages, for
# the operator's integration tests (tests/operator, backend "real") and for trying things by hand.
#
#   etcd 3.4                  Debian bookworm's etcd-server (the .deb, unpacked into the cache)
#   kube-apiserver v1.20.2,   compiled from Debian bookworm's `kubernetes` *source* package (upstream's
#   kube-controller-manager   full tree, vendor/ included) with bookworm's Go 1.19, GOPATH mode
#   apiextensions-apiserver   v1.36 (Debian sid's golang-k8s-apiextensions-apiserver-dev and its Go
#                             dependency closure, sid's Go): CRDs and custom resources only, so CEL
#                             (x-kubernetes-validations), which 1.20 silently drops, can be checked
#
# Nothing is installed system-wide and root is not needed: every .deb comes through a private apt index
# in the cache and is unpacked there (dpkg-deb -x). Needs apt-get, dpkg-deb, make, openssl, curl, python3.
#
#   hack/real-apiserver.sh build       # ~8.5 min on 2 cores (download, gen_openapi, compile); cached afterwards
#   hack/real-apiserver.sh build-cel   # ~6 min (317 .debs downloaded and unpacked, compile); cached afterwards
#   hack/real-apiserver.sh start       # PKI, tokens, etcd, kube-apiserver (RBAC), kube-controller-manager: ~7 s
#   hack/real-apiserver.sh start-cel   # the CRD-only v1.36 server, on the same etcd (after start)
#   hack/real-apiserver.sh restart-apiserver   # kube-apiserver only (same flags): watches see it go
#   hack/real-apiserver.sh stop        # stops whatever this run directory started
#   hack/real-apiserver.sh env         # the run's ports and kubeconfigs, as shell assignments
#   hack/real-apiserver.sh all         # build + start (+ build-cel + start-cel)
#
# Environment:
#   TOOLMODEL_REALK8S_CACHE  build cache (default ${XDG_CACHE_HOME:-~/.cache}/toolmodel/real-k8s): 5 GB while
#                            building, 0.4 GB after (binaries, apt indexes; TOOLMODEL_REALK8S_KEEP_BUILD=1 keeps all)
#   TOOLMODEL_REALK8S_RUN    run directory: PKI, tokens, etcd data, logs, pids, kubeconfigs, env
#                            (default $TOOLMODEL_REALK8S_CACHE/run); one control plane per run directory
#   TOOLMODEL_REALK8S_APISERVER_ARGS  extra kube-apiserver flags, split on spaces, e.g.
#                            --enable-admission-plugins=OwnerReferencesPermissionEnforcement
# Ports are free loopback ports chosen at `start` and written to $TOOLMODEL_REALK8S_RUN/env, so several
# run directories can be up at once.
set -euo pipefail

CACHE="${TOOLMODEL_REALK8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/toolmodel/real-k8s}"
RUN="${TOOLMODEL_REALK8S_RUN:-$CACHE/run}"
PKI="$RUN/pki"
BIN="$CACHE/bin"

# Debian bookworm's kubernetes source package: upstream v1.20.2 (the "+really" is Debian's).
K8S_DEB_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
K8S_VERSION="v1.20.2"
K8S_COMMIT="faecb196815e248d3ecfb03c680a4507229c2a56"
GO_BOOKWORM="golang-1.19"
STAMP="$K8S_DEB_VERSION $GO_BOOKWORM"

log() { printf 'real-apiserver: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"; }

# The Debian mirror this machine's apt already uses (deb822 sources, else sources.list), else deb.debian.org.
debian_uri() {
  local uri
  uri="$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
  [[ -n "$uri" ]] || uri="$(awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
  printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

# apt_private DIR SUITE TYPES: a private apt configuration (index, cache, dpkg status) in DIR for SUITE;
# sets the array APT_OPTS. /etc/apt and the system's dpkg database are left alone.
apt_private() {
  local dir="$1" suite="$2" types="$3"
  mkdir -p "$dir/parts" "$dir/lists/partial" "$dir/cache/archives/partial"
  printf '%s\n' "Types: $types" "URIs: $(debian_uri)" "Suites: $suite" 'Components: main' \
    'Architectures: amd64' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' >"$dir/parts/$suite.sources"
  : >"$dir/status"
  APT_OPTS=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$dir/parts" -o "Dir::State::Lists=$dir/lists"
    -o "Dir::Cache=$dir/cache" -o "Dir::State::status=$dir/status" -o APT::Architecture=amd64
    -o APT::Architectures::=amd64 -o Debug::NoLocking=1 -o APT::Sandbox::User="$(id -un)")
  apt-get "${APT_OPTS[@]}" update -qq
}

# unpack DEBS_DIR ROOT: every .deb of DEBS_DIR into ROOT.
unpack() {
  local deb
  rm -rf -- "${2:?}" && mkdir -p "$2"
  for deb in "$1"/*.deb; do dpkg-deb -x "$deb" "$2"; done
}

build_prereqs() {
  [[ "$(uname -sm)" == "Linux x86_64" ]] || die "builds linux/amd64 only, not $(uname -sm)"
  need apt-get "a Debian or Ubuntu machine is needed (the sources are Debian packages)"
  need dpkg-deb "install dpkg"
  need make "install make"
  [[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] || die "no Debian archive keyring: install debian-archive-keyring"
}

build() {
  if [[ -x "$BIN/kube-apiserver" && -x "$BIN/kube-controller-manager" && -x "$BIN/etcd" &&
    "$(cat "$BIN/.stamp" 2>/dev/null)" == "$STAMP" ]]; then
    log "built already: $BIN ($K8S_VERSION; rm -r $BIN to rebuild)"
    return
  fi
  build_prereqs
  local t0=$SECONDS apt="$CACHE/apt-bookworm" root="$CACHE/root-bookworm" src="$CACHE/src"
  local ksrc="$src/kubernetes-${K8S_VERSION#v}"
  mkdir -p "$BIN" "$src"

  log "apt (private bookworm index): $GO_BOOKWORM, etcd-server, reflect2 1.0.2, the kubernetes source package"
  apt_private "$apt" bookworm "deb deb-src"
  rm -rf "$apt/debs" && mkdir -p "$apt/debs"
  (cd "$apt/debs" && apt-get "${APT_OPTS[@]}" download "$GO_BOOKWORM-go" "$GO_BOOKWORM-src" etcd-server \
    golang-github-modern-go-reflect2-dev >"$apt/download.log" 2>&1) || die "apt-get download failed: $apt/download.log"
  unpack "$apt/debs" "$root"
  install -m 0755 "$root/usr/bin/etcd" "$BIN/etcd"

  if [[ ! -f "$ksrc/.prepared" ]]; then
    rm -rf -- "$ksrc"
    (cd "$src" && apt-get "${APT_OPTS[@]}" source --download-only "kubernetes=$K8S_DEB_VERSION" >"$apt/source.log" 2>&1) ||
      die "apt-get source kubernetes=$K8S_DEB_VERSION failed: $apt/source.log"
    tar -xzf "$src/kubernetes_${K8S_DEB_VERSION%-*}.orig.tar.gz" -C "$src"
    [[ -d "$ksrc" ]] || die "no $ksrc in the source package"
    # reflect2 v1.0.1 (vendored) reads Go runtime internals that Go 1.18 changed; 1.0.2 is API-compatible.
    local r2="$ksrc/vendor/github.com/modern-go/reflect2" d2="$root/usr/share/gocode/src/github.com/modern-go/reflect2"
    find "$r2" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) -delete
    cp "$d2"/*.go "$d2"/*.s "$r2/"
    touch "$ksrc/.prepared"
  fi

  local goroot="$root/usr/lib/go-${GO_BOOKWORM#golang-}"
  export PATH="$goroot/bin:$PATH" GOROOT="$goroot" GOPATH="$CACHE/gopath" GOCACHE="$CACHE/gocache"
  export GO111MODULE=off CGO_ENABLED=0 GOFLAGS='' GOTOOLCHAIN=local
  if ! command -v rsync >/dev/null 2>&1; then
    # Kubernetes' hack/lib/golang.sh places the generators it builds with `rsync -pc FILE DIR`.
    mkdir -p "$CACHE/shims"
    printf '%s\n' '#!/bin/sh' 'shift' 'exec cp -p "$@"' >"$CACHE/shims/rsync"
    chmod +x "$CACHE/shims/rsync"
    PATH="$CACHE/shims:$PATH"
  fi
  mkdir -p "$GOPATH/src/k8s.io"
  ln -sfn "$ksrc" "$GOPATH/src/k8s.io/kubernetes"
  if [[ ! -f "$ksrc/pkg/generated/openapi/zz_generated.openapi.go" ]]; then
    # Generated at build time upstream, so not in the tarball.
    log "make gen_openapi ($(go version))"
    rm -rf -- "${ksrc:?}/_output"
    (cd "$ksrc" && env HOME="$CACHE/home" KUBE_GIT_VERSION="$K8S_VERSION" KUBE_GIT_COMMIT="$K8S_COMMIT" \
      KUBE_GIT_TREE_STATE=archive KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 GO111MODULE= make gen_openapi \
      >"$CACHE/gen_openapi.log" 2>&1) || die "make gen_openapi failed: $CACHE/gen_openapi.log"
  fi
  local ld="-s -w" pkg c
  for pkg in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=20 -X $pkg.gitCommit=$K8S_COMMIT"
    ld+=" -X $pkg.gitTreeState=archive -X $pkg.buildDate=2021-01-13T13:20:00Z"
  done
  for c in kube-apiserver kube-controller-manager; do
    log "go build $c"
    (cd "$GOPATH/src/k8s.io/kubernetes" && go build -tags selinux,notest -ldflags "$ld" -o "$BIN/$c" "k8s.io/kubernetes/cmd/$c")
  done
  printf '%s' "$STAMP" >"$BIN/.stamp"
  log "built in $((SECONDS - t0)) s: $("$BIN/kube-apiserver" --version), $("$BIN/etcd" --version | head -n 1)"
  prune "$CACHE/gocache" "$CACHE/gopath" "$root" "$src" "$apt/debs"
}

# prune DIR...: what only a rebuild needs goes (about 3 GB of sources and Go caches), unless
# TOOLMODEL_REALK8S_KEEP_BUILD=1; the binaries stay.
prune() {
  [[ "${TOOLMODEL_REALK8S_KEEP_BUILD:-0}" == 1 ]] && return
  rm -rf -- "$@"
}


# -- CEL: the CRD-only apiextensions-apiserver of Debian sid ------------------------------------------

build_cel() {
  if [[ -x "$BIN/apiextensions-apiserver" ]]; then
    log "built already: $BIN/apiextensions-apiserver (rm it to rebuild)"
    return
  fi
  build_prereqs
  local t0=$SECONDS apt="$CACHE/apt-sid" root="$CACHE/root-sid"
  log "apt (private sid index): golang-k8s-apiextensions-apiserver-dev, its Go dependency closure, sid's Go"
  apt_private "$apt" sid deb
  local go
  go="$(apt-cache "${APT_OPTS[@]}" depends golang-go | awk '/Depends: golang-1\.[0-9]+-go/ {print $2; exit}')"
  [[ -n "$go" ]] || die "sid's golang-go names no golang-1.N-go"
  # Every -dev package the library needs, transitively: Go sources in a GOPATH layout.
  apt-cache "${APT_OPTS[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances golang-k8s-apiextensions-apiserver-dev 2>/dev/null |
    grep -vE '^[[:space:]<]' | sort -u | grep -E '^golang-.*-dev$' >"$apt/want.txt" || true
  printf '%s\n%s\n' "$go" "${go%-go}-src" >>"$apt/want.txt"
  local packages
  mapfile -t packages <"$apt/want.txt"
  rm -rf "$apt/debs" && mkdir -p "$apt/debs"
  (cd "$apt/debs" && apt-get "${APT_OPTS[@]}" download "${packages[@]}" >"$apt/download.log" 2>&1) ||
    die "apt-get download failed: $apt/download.log"
  log "unpacking ${#packages[@]} packages"
  unpack "$apt/debs" "$root"
  local gov="${go#golang-}" version v=k8s.io/component-base/version
  local goroot="$root/usr/lib/go-${gov%-go}"
  version="$(dpkg-deb -f "$apt"/debs/golang-k8s-apiextensions-apiserver-dev_*.deb Version)"
  version="v1.${version#0.}" && version="${version%%-*}"
  log "go build k8s.io/apiextensions-apiserver $version ($("$goroot/bin/go" version))"
  (cd "$root/usr/share/gocode/src/k8s.io/apiextensions-apiserver" &&
    env GOROOT="$goroot" GOPATH="$root/usr/share/gocode" GOCACHE="$CACHE/gocache-sid" GO111MODULE=off \
      GOFLAGS='' GOTOOLCHAIN=local CGO_ENABLED=0 \
      "$goroot/bin/go" build -ldflags "-s -w -X $v.gitVersion=$version -X $v.gitTreeState=debian-sid" \
      -o "$BIN/apiextensions-apiserver" .)
  log "built in $((SECONDS - t0)) s: apiextensions-apiserver $version"
  prune "$CACHE/gocache-sid" "$root" "$apt/debs"
}

# -- running ------------------------------------------------------------------------------------------

# free_ports N: N distinct free TCP ports on 127.0.0.1, one a line.
free_ports() {
  "${PYTHON:-python3}" - "$1" <<'PY'
import socket, sys
sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in sockets))
PY
}

pki() {
  [[ -f "$PKI/sa.pub" ]] && return
  mkdir -p "$PKI"
  log "PKI: a CA, the API servers' serving certificate, the service-account signing key"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 3650 \
    -subj /CN=toolmodel-real-k8s-ca 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$PKI/serving.key" -out "$PKI/serving.csr" \
    -subj /CN=kube-apiserver 2>/dev/null
  printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc" \
    'extendedKeyUsage=serverAuth' >"$PKI/serving.ext"
  openssl x509 -req -in "$PKI/serving.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 3650 \
    -extfile "$PKI/serving.ext" -out "$PKI/serving.crt" 2>/dev/null
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}

# kubeconfig FILE SERVER USER TOKEN
kubeconfig() {
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: real-k8s
  cluster: {server: "$2", certificate-authority: "$PKI/ca.crt"}
users:
- name: $3
  user: {token: $4}
contexts:
- name: real-k8s
  context: {cluster: real-k8s, user: $3}
current-context: real-k8s
EOF
}

alive() { [[ -f "$RUN/$1.pid" ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

# wait_ready NAME URL SECONDS: polls URL/readyz until it answers 200.
wait_ready() {
  local deadline=$((SECONDS + $3))
  until curl -sf --max-time 2 --cacert "$PKI/ca.crt" "$2/readyz" >/dev/null 2>&1; do
    alive "$1" || die "$1 exited; its log: $RUN/$1.log"
    ((SECONDS < deadline)) || die "$1 not ready within $3 s; its log: $RUN/$1.log"
    sleep 0.1
  done
}

load_env() {
  [[ -f "$RUN/env" ]] || die "nothing started in $RUN (run '$0 start')"
  # shellcheck source=/dev/null # written by start
  source "$RUN/env"
}

start_apiserver() {
  local args=()
  read -r -a args <"$RUN/apiserver-args" # extra flags, split on spaces
  "$BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$REALK8S_ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$REALK8S_PORT" --insecure-port=0 \
    --tls-cert-file="$PKI/serving.crt" --tls-private-key-file="$PKI/serving.key" --client-ca-file="$PKI/ca.crt" \
    --token-auth-file="$RUN/tokens.csv" --authorization-mode=RBAC \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc --api-audiences=https://kubernetes.default.svc \
    --service-cluster-ip-range=10.96.0.0/16 --endpoint-reconciler-type=none --allow-privileged=true \
    --audit-policy-file="$RUN/audit-policy.yaml" --audit-log-path="$RUN/audit.log" --audit-log-format=json \
    --cert-dir="$RUN/apiserver-certs" "${args[@]}" >>"$RUN/kube-apiserver.log" 2>&1 &
  echo $! >"$RUN/kube-apiserver.pid"
  wait_ready kube-apiserver "$REALK8S_SERVER" 60
}

start() {
  [[ -x "$BIN/kube-apiserver" && -x "$BIN/etcd" ]] || die "not built: run '$0 build' first"
  need openssl "install openssl"
  need curl "install curl"
  alive kube-apiserver && die "running already in $RUN ('$0 stop' first)"
  local t0=$SECONDS ports admin kcm
  mkdir -p "$RUN"
  pki
  mapfile -t ports < <(free_ports 4)
  admin="$(openssl rand -hex 16)" kcm="$(openssl rand -hex 16)"
  # static tokens: token,user,uid,"groups"
  printf '%s,admin,admin,"system:masters"\n%s,system:kube-controller-manager,kcm\n' "$admin" "$kcm" >"$RUN/tokens.csv"
  cat >"$RUN/env" <<EOF
REALK8S_RUN=$RUN
REALK8S_VERSION=$K8S_VERSION
REALK8S_PORT=${ports[0]}
REALK8S_ETCD_PORT=${ports[1]}
REALK8S_ETCD_PEER_PORT=${ports[2]}
REALK8S_KCM_PORT=${ports[3]}
REALK8S_SERVER=https://127.0.0.1:${ports[0]}
REALK8S_CA=$PKI/ca.crt
REALK8S_ADMIN_TOKEN=$admin
REALK8S_KUBECONFIG=$RUN/admin.kubeconfig
REALK8S_AUDIT_LOG=$RUN/audit.log
EOF
  load_env
  # Kept for restart-apiserver.
  printf '%s\n' "${TOOLMODEL_REALK8S_APISERVER_ARGS:-}" >"$RUN/apiserver-args"
  kubeconfig "$RUN/admin.kubeconfig" "$REALK8S_SERVER" admin "$admin"
  kubeconfig "$RUN/kcm.kubeconfig" "$REALK8S_SERVER" system:kube-controller-manager "$kcm"
  # Who did what, for the RBAC tests: everyone but the control plane's own components.
  printf '%s\n' 'apiVersion: audit.k8s.io/v1' 'kind: Policy' 'omitStages: [RequestReceived]' 'rules:' \
    '- level: None' '  users: ["system:kube-controller-manager", "system:apiserver"]' \
    '- level: None' '  userGroups: ["system:serviceaccounts:kube-system"]' \
    '- level: Metadata' >"$RUN/audit-policy.yaml"

  log "etcd on 127.0.0.1:$REALK8S_ETCD_PORT"
  "$BIN/etcd" --name real-k8s --data-dir "$RUN/etcd" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$REALK8S_ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$REALK8S_ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$REALK8S_ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$REALK8S_ETCD_PEER_PORT" \
    --initial-cluster "real-k8s=http://127.0.0.1:$REALK8S_ETCD_PEER_PORT" >>"$RUN/etcd.log" 2>&1 &
  echo $! >"$RUN/etcd.pid"

  log "kube-apiserver $K8S_VERSION on $REALK8S_SERVER (RBAC${TOOLMODEL_REALK8S_APISERVER_ARGS:+; $TOOLMODEL_REALK8S_APISERVER_ARGS})"
  start_apiserver

  log "kube-controller-manager (garbage collector, deployments, replica sets, namespaces, service accounts)"
  "$BIN/kube-controller-manager" \
    --kubeconfig="$RUN/kcm.kubeconfig" \
    --authentication-kubeconfig="$RUN/kcm.kubeconfig" --authorization-kubeconfig="$RUN/kcm.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$REALK8S_KCM_PORT" --port=0 --cert-dir="$RUN/kcm-certs" \
    --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    >>"$RUN/kube-controller-manager.log" 2>&1 &
  echo $! >"$RUN/kube-controller-manager.pid"
  log "up in $((SECONDS - t0)) s: export KUBECONFIG=$REALK8S_KUBECONFIG"
}

restart_apiserver() {
  load_env
  stop_one kube-apiserver
  log "kube-apiserver again on $REALK8S_SERVER"
  start_apiserver
}

start_cel() {
  [[ -x "$BIN/apiextensions-apiserver" ]] || die "not built: run '$0 build-cel' first"
  load_env
  alive kube-apiserver || die "'$0 start' first: authentication, authorization and the core API are delegated to it"
  alive apiextensions-apiserver && die "running already in $RUN"
  local port
  port="$(free_ports 1)"
  printf '%s\n' "REALK8S_CEL_PORT=$port" "REALK8S_CEL_SERVER=https://127.0.0.1:$port" >>"$RUN/env"
  load_env
  log "apiextensions-apiserver on $REALK8S_CEL_SERVER (etcd prefix /registry-apiext)"
  "$BIN/apiextensions-apiserver" --etcd-servers="http://127.0.0.1:$REALK8S_ETCD_PORT" --etcd-prefix=/registry-apiext \
    --bind-address=127.0.0.1 --secure-port="$REALK8S_CEL_PORT" \
    --tls-cert-file="$PKI/serving.crt" --tls-private-key-file="$PKI/serving.key" \
    --kubeconfig="$RUN/admin.kubeconfig" \
    --authentication-kubeconfig="$RUN/admin.kubeconfig" --authorization-kubeconfig="$RUN/admin.kubeconfig" \
    --disable-admission-plugins=NamespaceLifecycle,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,MutatingAdmissionPolicy \
    --enable-priority-and-fairness=false >>"$RUN/apiextensions-apiserver.log" 2>&1 &
  echo $! >"$RUN/apiextensions-apiserver.pid"
  wait_ready apiextensions-apiserver "$REALK8S_CEL_SERVER" 60
  log "up: $REALK8S_CEL_SERVER (CRDs and custom resources only: plain HTTP clients, not kubectl)"
}

# stop_one NAME: stops the process this run directory started as NAME, if it still is that process.
stop_one() {
  local pid
  [[ -f "$RUN/$1.pid" ]] || return 0
  pid="$(cat "$RUN/$1.pid")"
  if kill -0 "$pid" 2>/dev/null && grep -qF "$BIN/$1" "/proc/$pid/cmdline" 2>/dev/null; then
    kill "$pid"
    local deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
    log "stopped $1 ($pid)"
  fi
  rm -f "$RUN/$1.pid"
}

stop() {
  local c
  for c in apiextensions-apiserver kube-controller-manager kube-apiserver etcd; do stop_one "$c"; done
}

# locked COMMAND: one build at a time per cache (two test sessions may start at once).
locked() {
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.build.lock"
  if command -v flock >/dev/null 2>&1; then flock 9; fi
  "$@"
}

case "${1:-}" in
  build) locked build ;;
  build-cel) locked build_cel ;;
  start) start ;;
  start-cel) start_cel ;;
  restart-apiserver) restart_apiserver ;;
  stop) stop ;;
  env) load_env && cat "$RUN/env" ;;
  all)
    locked build && build_cel
    start && start_cel
    ;;
  *)
    echo "usage: $0 build|build-cel|start|start-cel|restart-apiserver|stop|env|all" >&2
    exit 2
    ;;
esac
