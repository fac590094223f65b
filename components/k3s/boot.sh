#!/bin/bash
# Node bootstrap, run once by cloud-init: read this node's secrets from AWS Secrets Manager, write
# the K3s config, install the pinned K3s. User data carries no secret; the node role is the only
# thing that can read the secret. Parameters come from boot.env (written by cloud-init).
#
# Every download is checked against a sha256 from boot.env before it is used, and every network
# step is retried with doubling, capped backoff. A boot that fails tags its instance
# platform:boot=failed and, on an agent, tells the Auto Scaling group the instance is unhealthy,
# so the group replaces it instead of keeping a node that never joined.
#
# PLATFORM_ROOT prefixes every path so the script can be exercised in a sandbox directory
# (INSTANCE_ID and ZONE then stand in for the instance metadata).
set -euo pipefail
umask 077

ROOT="${PLATFORM_ROOT:-}"
# shellcheck source=/dev/null
. "${PLATFORM_BOOT_ENV:-$ROOT/etc/platform/boot.env}"

: "${NODE_ROLE:?boot.env must set NODE_ROLE (server or agent)}"
: "${CLUSTER_INIT:?boot.env must set CLUSTER_INIT}"
: "${SECRET_ID:?boot.env must set SECRET_ID}"
: "${AWS_REGION:?boot.env must set AWS_REGION}"
: "${K3S_VERSION:?boot.env must set K3S_VERSION}"
: "${K3S_BINARY_URL:?boot.env must set K3S_BINARY_URL}"
: "${K3S_BINARY_SHA256:?boot.env must set K3S_BINARY_SHA256}"
: "${K3S_INSTALL_URL:?boot.env must set K3S_INSTALL_URL}"
: "${K3S_INSTALL_SHA256:?boot.env must set K3S_INSTALL_SHA256}"
: "${SERVER_ADDRESSES:?boot.env must set SERVER_ADDRESSES}"
ECR_CREDENTIAL_PROVIDER_URL="${ECR_CREDENTIAL_PROVIDER_URL:-}"
ECR_CREDENTIAL_PROVIDER_SHA256="${ECR_CREDENTIAL_PROVIDER_SHA256:-}"
CA_SECRET_ID="${CA_SECRET_ID:-}"
SNAPSHOT_BUCKET="${SNAPSHOT_BUCKET:-}"
SNAPSHOT_PREFIX="${SNAPSHOT_PREFIX:-}"
API_PORT="${API_PORT:-6443}"
SECRET_ATTEMPTS="${SECRET_ATTEMPTS:-30}"
JOIN_ATTEMPTS="${JOIN_ATTEMPTS:-90}"
DOWNLOAD_ATTEMPTS="${DOWNLOAD_ATTEMPTS:-6}"
RETRY_SECONDS="${RETRY_SECONDS:-10}"
RETRY_MAX_SECONDS="${RETRY_MAX_SECONDS:-60}"

CONFIG_DIR=/etc/rancher/k3s
DATA_DIR=/var/lib/rancher/k3s
WORK=$(mktemp -d "${TMPDIR:-/tmp}/platform-boot.XXXXXX")
PROBLEM=""

log() { echo "platform-boot: $*" >&2; }
fail() {
  log "ERROR: $*"
  exit 1
}

imds() {
  local token
  token=$(curl -sf -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" \
    http://169.254.169.254/latest/api/token) || return 1
  curl -sf -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}

# The node role allows exactly these two calls, on nodes of this cluster only (cluster.py).
report_failure() {
  local id="${INSTANCE_ID:-}"
  if [ -z "$id" ] && ! id=$(imds instance-id); then
    log "cannot read the instance id: the instance stays as it is"
    return 0
  fi
  aws ec2 create-tags --region "$AWS_REGION" --resources "$id" \
    --tags Key=platform:boot,Value=failed >/dev/null ||
    log "cannot tag $id platform:boot=failed"
  if [ "$NODE_ROLE" = agent ]; then
    aws autoscaling set-instance-health --region "$AWS_REGION" --instance-id "$id" \
      --health-status Unhealthy --no-should-respect-grace-period ||
      log "cannot mark $id unhealthy in its Auto Scaling group"
  fi
}

on_exit() {
  local status=$?
  rm -rf "$WORK"
  if [ "$status" -ne 0 ]; then
    log "boot of this $NODE_ROLE failed (exit $status); marking the instance"
    report_failure
  fi
  exit "$status"
}
trap on_exit EXIT

# Seconds to sleep after failed attempt $1: RETRY_SECONDS, doubled per attempt, capped.
backoff() {
  local delay=$RETRY_SECONDS n=1
  while [ "$n" -lt "$1" ] && [ "$delay" -lt "$RETRY_MAX_SECONDS" ]; do
    delay=$((delay * 2))
    n=$((n + 1))
  done
  echo $((delay < RETRY_MAX_SECONDS ? delay : RETRY_MAX_SECONDS))
}

# retry ATTEMPTS WHAT COMMAND...: runs COMMAND (which explains a failure in PROBLEM) until it
# succeeds, at most ATTEMPTS times.
retry() {
  local attempts=$1 what=$2 attempt=1
  shift 2
  until "$@"; do
    if [ "$attempt" -ge "$attempts" ]; then
      fail "$what: $PROBLEM (gave up after $attempt attempts)"
    fi
    log "$what: $PROBLEM; retrying ($attempt/$attempts)"
    sleep "$(backoff "$attempt")"
    attempt=$((attempt + 1))
  done
}

# One attempt at fetching URL $1 into $2; with a sha256 $3 the file must match it. A mirror or a
# broken connection can hand over a wrong file as well as an error, so both are retried.
fetch() {
  local actual
  if ! curl -sSfL --connect-timeout 10 --max-time 600 -o "$2.part" "$1" 2>"$WORK/curl.err"; then
    PROBLEM=$(tail -n1 "$WORK/curl.err")
    rm -f "$2.part"
    return 1
  fi
  if [ -n "${3:-}" ]; then
    actual=$(sha256sum "$2.part")
    actual=${actual%% *}
    if [ "$actual" != "$3" ]; then
      PROBLEM="sha256 $actual does not match the pinned $3"
      rm -f "$2.part"
      return 1
    fi
  fi
  mv "$2.part" "$2"
}

# download URL SHA256 DEST
download() {
  [ -n "$2" ] || fail "no sha256 for $1: nothing unverified is installed"
  retry "$DOWNLOAD_ATTEMPTS" "cannot download $1" fetch "$1" "$3" "$2"
  log "downloaded $1 (sha256 $2)"
}

# read_secret ID FILE: the AWS CLI's messages go to their own file, only SecretString to FILE.
read_secret() {
  if aws secretsmanager get-secret-value --region "$AWS_REGION" --secret-id "$1" \
    --query SecretString --output text >"$2" 2>"$WORK/aws.err"; then
    return 0
  fi
  PROBLEM=$(tail -n1 "$WORK/aws.err")
  return 1
}

# Writes the token files from the secret JSON on stdin and, on the server that founds the cluster,
# the CA files from the CA secret's JSON file, all 0600; no value passes through the command line
# or the log.
WRITE_FILES_PY='
import json, os, sys
config_dir, tls_dir, ca_file = sys.argv[1], sys.argv[2], sys.argv[3]
def load(handle, what):
    try:
        return json.load(handle)
    except ValueError:
        sys.exit(what + " is not JSON")
def write(path, text):
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
secret = load(sys.stdin, "bootstrap secret")
if not secret.get("token"):
    sys.exit("bootstrap secret has no token")
write(os.path.join(config_dir, "token"), secret["token"] + "\n")
if secret.get("agentToken"):
    write(os.path.join(config_dir, "agent-token"), secret["agentToken"] + "\n")
if ca_file:
    with open(ca_file) as handle:
        files = load(handle, "CA secret").get("caFiles")
    if not files:
        sys.exit("CA secret has no caFiles")
    for name, pem in sorted(files.items()):
        write(os.path.join(tls_dir, name), pem)
'

# The newest etcd snapshot of this cluster: SNAPSHOT_PREFIX carries its generation, so snapshots
# of an earlier cluster in the same bucket are never picked up.
find_snapshot() {
  # The backquotes are a JMESPath literal (an empty list), not a shell expansion.
  # shellcheck disable=SC2016
  if aws s3api list-objects-v2 --region "$AWS_REGION" --bucket "$SNAPSHOT_BUCKET" \
    --prefix "$SNAPSHOT_PREFIX" --query 'sort_by(Contents || `[]`, &LastModified)[-1].Key' \
    --output text >"$WORK/snapshot" 2>"$WORK/aws.err"; then
    return 0
  fi
  PROBLEM=$(tail -n1 "$WORK/aws.err")
  return 1
}

# /cacerts is served without authentication by every K3s server; an answer means a cluster is up.
# A server probing its own address before K3s runs gets no answer, so servers need no exclusion.
find_live_server() {
  local addr
  for addr in $SERVER_ADDRESSES; do
    if curl -sk --max-time 3 -o /dev/null "https://$addr:$API_PORT/cacerts"; then
      JOIN_ADDRESS=$addr
      return 0
    fi
  done
  PROBLEM="no K3s server answered on port $API_PORT at: $SERVER_ADDRESSES"
  return 1
}

# The kubelet runs this plugin to get short-lived ECR pull tokens with the node role.
install_credential_provider() {
  local target="$ROOT/var/lib/rancher/credentialprovider/bin/ecr-credential-provider"
  local url=$ECR_CREDENTIAL_PROVIDER_URL sha256=$ECR_CREDENTIAL_PROVIDER_SHA256
  if [ -z "$sha256" ]; then
    # No pin recorded (components/versions.py): the digest the release publishes beside it.
    retry "$DOWNLOAD_ATTEMPTS" "cannot download $url.sha256" fetch "$url.sha256" "$WORK/provider.sha256"
    sha256=$(cut -d' ' -f1 <"$WORK/provider.sha256")
    [[ "$sha256" =~ ^[0-9a-f]{64}$ ]] || fail "$url.sha256 holds no sha256"
  fi
  mkdir -p "$(dirname "$target")"
  download "$url" "$sha256" "$WORK/ecr-credential-provider"
  install -m 755 "$WORK/ecr-credential-provider" "$target"
}

# The binary is verified here; install.sh (itself verified) then only writes the service.
install_k3s() {
  local bin_dir="$ROOT/usr/local/bin"
  mkdir -p "$bin_dir"
  download "$K3S_BINARY_URL" "$K3S_BINARY_SHA256" "$WORK/k3s"
  install -m 755 "$WORK/k3s" "$bin_dir/k3s"
  download "$K3S_INSTALL_URL" "$K3S_INSTALL_SHA256" "$WORK/install.sh"
  INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_BIN_DIR="$bin_dir" \
    INSTALL_K3S_VERSION="$K3S_VERSION" INSTALL_K3S_EXEC="$1" INSTALL_K3S_SKIP_START="$2" \
    INSTALL_K3S_SKIP_SELINUX_RPM=true INSTALL_K3S_SELINUX_WARN=true sh "$WORK/install.sh"
}

main() {
  local with_ca=false restore=""
  JOIN_ADDRESS=""
  if [ "$NODE_ROLE" = server ] && [ "$CLUSTER_INIT" = true ]; then
    # A replacement of the first server must join the running cluster, not found a second one.
    if find_live_server; then
      log "a cluster is already running at $JOIN_ADDRESS; joining it"
    else
      with_ca=true
    fi
  else
    retry "$JOIN_ATTEMPTS" "waiting for a K3s server" find_live_server
  fi

  retry "$SECRET_ATTEMPTS" "cannot read bootstrap secret $SECRET_ID" \
    read_secret "$SECRET_ID" "$WORK/secret"
  local ca_file=""
  if [ "$with_ca" = true ]; then
    [ -n "$CA_SECRET_ID" ] || fail "no CA secret in boot.env: only server 0 may found the cluster"
    # Read access follows this instance's ARN, granted right after it was created.
    retry "$SECRET_ATTEMPTS" "cannot read CA secret $CA_SECRET_ID" \
      read_secret "$CA_SECRET_ID" "$WORK/ca"
    ca_file="$WORK/ca"
  fi
  python3 -c "$WRITE_FILES_PY" "$ROOT$CONFIG_DIR" "$ROOT$DATA_DIR/server/tls" "$ca_file" \
    <"$WORK/secret" || fail "cannot use bootstrap secret $SECRET_ID"
  rm -f "$WORK/secret" "$WORK/ca"

  # A server that founds the cluster while snapshots of it exist replaces a lost one (dev's
  # single server): it comes back with the cluster's data instead of an empty cluster.
  if [ "$with_ca" = true ] && [ -n "$SNAPSHOT_BUCKET" ]; then
    retry "$SECRET_ATTEMPTS" "cannot list s3://$SNAPSHOT_BUCKET/$SNAPSHOT_PREFIX" find_snapshot
    restore=$(<"$WORK/snapshot")
    [ "$restore" != None ] || restore=""
  fi

  local zone="${ZONE:-}"
  if [ -z "$zone" ]; then
    zone=$(imds placement/availability-zone) || fail "cannot read the availability zone from IMDS"
  fi

  local config="$ROOT$CONFIG_DIR/config.yaml"
  mkdir -p "$ROOT$CONFIG_DIR"
  {
    cat "$ROOT/etc/platform/k3s-config.yaml"
    echo "token-file: $CONFIG_DIR/token"
    echo "node-label:"
    echo "  - topology.kubernetes.io/zone=$zone"
    if [ "$NODE_ROLE" = server ]; then
      echo "agent-token-file: $CONFIG_DIR/agent-token"
    fi
    if [ "$with_ca" = true ]; then
      echo "cluster-init: true"
    else
      echo "server: https://$JOIN_ADDRESS:$API_PORT"
    fi
  } >"$config"
  chmod 600 "$config"

  if [ "$NODE_ROLE" = server ]; then
    # umask 077 already makes every new directory on the way 0700, as the audit log wants.
    mkdir -p "$ROOT$DATA_DIR/server/logs"
  fi
  if [ -z "$ROOT" ]; then
    # protect-kernel-defaults makes the kubelet refuse to start unless these are applied first.
    sysctl --system >/dev/null
  fi
  if [ -n "$ECR_CREDENTIAL_PROVIDER_URL" ]; then
    install_credential_provider
  fi
  if [ -z "$restore" ]; then
    install_k3s "$NODE_ROLE" false
  else
    install_k3s "$NODE_ROLE" true
    log "restoring etcd from s3://$SNAPSHOT_BUCKET/$restore"
    # --cluster-reset takes the etcd-s3 settings from config.yaml and exits once restored.
    "$ROOT/usr/local/bin/k3s" server --cluster-reset \
      --cluster-reset-restore-path="${restore##*/}" || fail "cannot restore $restore"
    systemctl start k3s || fail "K3s did not start after restoring $restore"
  fi
  log "K3s $K3S_VERSION installed as $NODE_ROLE"
}

main "$@"
