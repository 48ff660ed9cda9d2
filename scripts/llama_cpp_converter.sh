#!/usr/bin/env bash
# Unpack llama.cpp's own HF -> GGUF converter (convert_hf_to_gguf.py, conversion/, gguf-py/)
# from the llama-cpp-python sdist the runtime pins into .cache/llama.cpp-converter/.
# tests/test_reasoner_gguf_llama_cpp_parity.py then compares the exporter's GGUFs with the
# converter's output live; without it the test compares them with a recorded digest.
#   scripts/llama_cpp_converter.sh            (VPY=path/to/python to use another interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
VPY="${VPY:-.venv/bin/python}"
version=$(sed -n 's/.*"llama-cpp-python==\([^"]*\)".*/\1/p' pyproject.toml | head -n 1)
[ -n "$version" ] || { echo "no llama-cpp-python pin in pyproject.toml" >&2; exit 1; }
dest=.cache/llama.cpp-converter
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== llama-cpp-python $version sdist (its vendored llama.cpp holds the converter)"
"$VPY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$tmp"
tar -xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp" --wildcards \
    '*/vendor/llama.cpp/convert_hf_to_gguf.py' '*/vendor/llama.cpp/conversion/*' \
    '*/vendor/llama.cpp/gguf-py/*'
src=$(echo "$tmp"/llama_cpp_python-*/vendor/llama.cpp)
rm -rf "$dest.partial"
mkdir -p "$dest.partial"
cp -r "$src/convert_hf_to_gguf.py" "$src/conversion" "$src/gguf-py" "$dest.partial/"
echo "llama-cpp-python $version" > "$dest.partial/VERSION"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "llama.cpp's converter is in $dest"
