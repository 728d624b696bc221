#!/usr/bin/env bash
# Installs the Debian 12 packages mtld needs to build and test, when missing.
# Run as root (apt-get); as another user it only reports what is missing.
set -euo pipefail
pkgs=(cmake make pkg-config gcc g++ clang libclang-rt-14-dev clang-format
      librdkafka-dev librocksdb-dev libblis-serial-dev libprotobuf-c-dev protobuf-c-compiler
      libconfig-dev libsystemd-dev libmicrohttpd-dev libjson-c-dev libxxhash-dev
      systemd python3 prometheus
      python3-numpy python3-protobuf python3-xxhash protobuf-compiler gnuplot-nox kcat
      ${MTLD_EXTRA_PKGS:-})
# prometheus is only for its promtool (test_metrics runs `promtool check
# metrics`); on a host with a running systemd the package also enables
# prometheus.service (port 9090), which mtld does not need: disable it at will.
# python3-numpy, python3-protobuf, python3-xxhash and protobuf-compiler (protoc
# generates the Python code of schemas/snapshot.proto at test time) are for
# the Python snapshot reader, tools/mtld_reader.py (test_readers).
# gnuplot-nox draws the learning curves of tools/mtld-plot (make demo,
# test_seeing_results).
# kcat runs the README's kcat example (test_readme_examples).
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: not root; install these with apt-get: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
