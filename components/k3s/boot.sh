#!/bin/bash
# Node bootstrap, run once by cloud-init: read this node's secrets from AWS Secrets Manager, write
# the K3s config, install the pinned K3s. User data carries no secret; the node role is the only
# thing that can read the secret. Parameters come from boot.env (written by cloud-init).
#
# PLATFORM_ROOT prefixes every path so the script can be exercised in a sandbox directory;
# K3S_INSTALL_COMMAND replaces the K3s download+install step there.
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
: "${SERVER_ADDRESSES:?boot.env must set SERVER_ADDRESSES}"
ECR_CREDENTIAL_PROVIDER_URL="${ECR_CREDENTIAL_PROVIDER_URL:-}"
API_PORT="${API_PORT:-6443}"
SECRET_ATTEMPTS="${SECRET_ATTEMPTS:-30}"
JOIN_ATTEMPTS="${JOIN_ATTEMPTS:-90}"
RETRY_SECONDS="${RETRY_SECONDS:-10}"

CONFIG_DIR=/etc/rancher/k3s
DATA_DIR=/var/lib/rancher/k3s

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

# The instance profile can take a little while to become usable after launch, so retry, bounded.
fetch_secret() {
  local attempt=1 out
  while true; do
    if out=$(aws secretsmanager get-secret-value --region "$AWS_REGION" --secret-id "$SECRET_ID" \
      --query SecretString --output text 2>&1); then
      printf '%s' "$out"
      return 0
    fi
    if [ "$attempt" -ge "$SECRET_ATTEMPTS" ]; then
      fail "cannot read bootstrap secret $SECRET_ID after $attempt attempts: $(tail -n1 <<<"$out")"
    fi
    log "waiting for bootstrap secret $SECRET_ID ($attempt/$SECRET_ATTEMPTS): $(tail -n1 <<<"$out")"
    attempt=$((attempt + 1))
    sleep "$RETRY_SECONDS"
  done
}

# Writes the token files (and the CA files on the server that initialises the cluster), 0600,
# from the secret JSON on stdin; the values never pass through the command line or the log.
WRITE_FILES_PY='
import json, os, sys
config_dir, tls_dir, with_ca = sys.argv[1], sys.argv[2], sys.argv[3] == "true"
try:
    secret = json.load(sys.stdin)
except ValueError:
    sys.exit("bootstrap secret is not JSON")
def write(path, text):
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
if not secret.get("token"):
    sys.exit("bootstrap secret has no token")
write(os.path.join(config_dir, "token"), secret["token"] + "\n")
if secret.get("agentToken"):
    write(os.path.join(config_dir, "agent-token"), secret["agentToken"] + "\n")
if with_ca:
    files = secret.get("caFiles")
    if not files:
        sys.exit("bootstrap secret has no caFiles")
    for name, pem in sorted(files.items()):
        write(os.path.join(tls_dir, name), pem)
'

# /cacerts is served without authentication by every K3s server; an answer means a cluster is up.
# A server probing its own address before K3s runs gets no answer, so servers need no exclusion.
answers() {
  curl -sk --max-time 3 -o /dev/null "https://$1:$API_PORT/cacerts"
}

first_live_server() {
  local addr
  for addr in $SERVER_ADDRESSES; do
    if answers "$addr"; then
      echo "$addr"
      return 0
    fi
  done
  return 1
}

wait_for_server() {
  local attempt=1 addr
  until addr=$(first_live_server); do
    if [ "$attempt" -ge "$JOIN_ATTEMPTS" ]; then
      fail "no K3s server answered on port $API_PORT at: $SERVER_ADDRESSES"
    fi
    log "waiting for a K3s server at $SERVER_ADDRESSES ($attempt/$JOIN_ATTEMPTS)"
    attempt=$((attempt + 1))
    sleep "$RETRY_SECONDS"
  done
  echo "$addr"
}

# The kubelet runs this plugin to get short-lived ECR pull tokens with the node role.
install_credential_provider() {
  local target="$ROOT/var/lib/rancher/credentialprovider/bin/ecr-credential-provider"
  mkdir -p "$(dirname "$target")"
  curl -sfL --retry 5 -o "$target.download" "$ECR_CREDENTIAL_PROVIDER_URL" ||
    fail "cannot download the ECR credential provider from $ECR_CREDENTIAL_PROVIDER_URL"
  chmod 755 "$target.download"
  mv "$target.download" "$target"
}

install_k3s() {
  local installer="${K3S_INSTALL_COMMAND:-}"
  if [ -z "$installer" ]; then
    installer=$(mktemp)
    # The installer is taken from the pinned release tag, not the moving get.k3s.io script.
    curl -sfL --retry 5 -o "$installer" \
      "https://raw.githubusercontent.com/k3s-io/k3s/${K3S_VERSION/+/%2B}/install.sh"
  fi
  INSTALL_K3S_VERSION="$K3S_VERSION" INSTALL_K3S_EXEC="$1" \
    INSTALL_K3S_SKIP_SELINUX_RPM=true INSTALL_K3S_SELINUX_WARN=true sh "$installer"
}

main() {
  local with_ca=false join_address="" secret
  if [ "$NODE_ROLE" = server ] && [ "$CLUSTER_INIT" = true ]; then
    # A replacement of the first server must join the running cluster, not found a second one.
    if join_address=$(first_live_server); then
      log "a cluster is already running at $join_address; joining it"
    else
      with_ca=true
    fi
  else
    join_address=$(wait_for_server)
  fi

  secret=$(fetch_secret)
  printf '%s' "$secret" | python3 -c "$WRITE_FILES_PY" \
    "$ROOT$CONFIG_DIR" "$ROOT$DATA_DIR/server/tls" "$with_ca" || fail "cannot use bootstrap secret $SECRET_ID"
  unset secret

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
      echo "server: https://$join_address:$API_PORT"
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
  install_k3s "$NODE_ROLE"
  log "K3s $K3S_VERSION installed as $NODE_ROLE"
}

main "$@"
