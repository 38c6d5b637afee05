# Sourced by the GPU scripts (cuda_smoke.sh, cuda_table.sh), from the repository root: puts
# carried wheels (.whl/*.whl, optional: another cuda-bindings, say) into /tmp/site and on
# PYTHONPATH with the repository, and finds NVRTC: the image's wheel, else the CUDA toolkit's
# libnvrtc (cuda-pathfinder looks under CUDA_HOME, then the library path). Sets PY.
PY=python3
if compgen -G ".whl/*.whl" > /dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing the carried wheels failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
if [ -z "${CUDA_HOME:-}" ]; then
  for candidate in /usr/local/cuda "$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /x/x)")")" /usr/local/cuda-*; do
    for lib in "$candidate/lib64" "$candidate/targets/x86_64-linux/lib"; do
      if compgen -G "$lib/libnvrtc.so*" > /dev/null; then
        export CUDA_HOME=$candidate LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        break 2
      fi
    done
  done
fi
echo "CUDA_HOME=${CUDA_HOME:-unset}; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | head -1)"
export PYTHONUNBUFFERED=1
