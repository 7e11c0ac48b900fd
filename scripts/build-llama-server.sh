#!/usr/bin/env bash
# Build llama.cpp's native `llama-server` once per machine, into $SERVER_CACHE/llama-server-VERSION/bin.
#
# Why: llama-cpp-python's own server (the fallback, `local_server = "python"`) runs one request at
# a time; llama.cpp's C++ server batches the many independent calls a graph sends across parallel
# slots (see agents/local_server.py). The source is the vendor/llama.cpp tree inside the pinned
# llama-cpp-python sdist, the same code as the wheel of scripts/build-llama-wheel.sh, built with the
# same portable flags (AVX2/FMA/F16C, no -march=native: AMX/AVX-512 builds crash on some VMs), as a
# static binary (no shared libraries to find at run time), without curl, OpenSSL or the web UI
# (the UI would otherwise be downloaded at build time). Only the sdist is downloaded, from PyPI.
set -euo pipefail
version="${1:?usage: build-llama-server.sh VERSION}"
cache="${SERVER_CACHE:-$HOME/.cache/carealign}"
py="${PY:-python3}"
dest="$cache/llama-server-$version"
if [ -x "$dest/bin/llama-server" ]; then
    exit 0
fi
case "$(uname -m)" in
    x86_64) flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" ;;
    *) flags="-DGGML_NATIVE=OFF" ;;
esac
echo "building llama.cpp's llama-server $version (portable, about 5 minutes on 2 cores, once per machine)" >&2
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.llama-server-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$py" -m pip download -q --no-deps --no-binary :all: -d "$tmp" "llama-cpp-python==$version"
tar -xzf "$tmp"/llama_cpp_python-"$version".tar.gz -C "$tmp"
src="$tmp/llama_cpp_python-$version/vendor/llama.cpp"
# shellcheck disable=SC2086  # $flags is a list of cmake options
cmake -S "$src" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON $flags >"$tmp/cmake.log" 2>&1 \
    || { tail -30 "$tmp/cmake.log" >&2; exit 1; }
cmake --build "$tmp/build" --target llama-server -j "$(nproc)" >"$tmp/build.log" 2>&1 \
    || { tail -40 "$tmp/build.log" >&2; exit 1; }
"$tmp/build/bin/llama-server" --version >/dev/null 2>&1 \
    || { echo "the built llama-server does not run" >&2; exit 1; }
# into place in one rename, so a half-copied binary is never taken for a finished build
mkdir -p "$tmp/out/bin"
cp "$tmp/build/bin/llama-server" "$tmp/out/bin/"
echo "llama-cpp-python $version vendor/llama.cpp; cmake flags: $flags" >"$tmp/out/BUILD_INFO"
rm -rf "$dest"
mv "$tmp/out" "$dest"
