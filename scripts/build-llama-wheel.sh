#!/usr/bin/env bash
# Build llama-cpp-python once per machine as a portable x86-64 wheel, into $WHEELHOUSE.
#
# Why not a plain `pip install llama-cpp-python`: pip compiles it with -march=native, and on
# machines that advertise AMX / AVX-512 without the kernel letting a process use them (some VMs and
# sandboxes) the resulting library segfaults on the first matrix multiply. This build targets
# AVX2/FMA/F16C, which every x86-64 server of the last decade has, and is cached so later installs
# take seconds instead of minutes.
set -euo pipefail
version="${1:?usage: build-llama-wheel.sh VERSION}"
wheelhouse="${WHEELHOUSE:-$HOME/.cache/carealign/wheels}"
py="${PY:-python3}"
mkdir -p "$wheelhouse"
if ls "$wheelhouse"/llama_cpp_python-"$version"-*.whl >/dev/null 2>&1; then
    exit 0
fi
case "$(uname -m)" in
    x86_64) flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" ;;
    *) flags="-DGGML_NATIVE=OFF" ;;
esac
echo "building llama-cpp-python $version (portable, about 5-10 minutes on 2 cores, once per machine)" >&2
tmp=$(mktemp -d)
CMAKE_ARGS="$flags" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$py" -m pip wheel -q --no-cache-dir --no-deps -w "$tmp" "llama-cpp-python==$version"
mv "$tmp"/llama_cpp_python-*.whl "$wheelhouse"/
rmdir "$tmp"
