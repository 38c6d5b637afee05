/* A stand-in for libcuda (tests/targets/cuda/test_cuda_if.py): the driver calls an artifact's C
 * entry point (NAME_cuda.c) makes, answered on the CPU, as cuda_emulation.FakeDriver answers
 * runtime/cuda.py's: host memory as device memory, streams run their work at once, and kernels
 * from the artifact's model.cu compiled for the CPU (cuda_emulation.compile_kernels: the
 * shared library named by PYC_EMU_KERNELS, launched through its pyc_emu_launch). PYC_EMU_ARGS
 * gives each kernel's parameter count ("name=count,..."; cuLaunchKernel's array carries none).
 * At exit it prints "fake: launches L reads R" to stderr: kernels run, and 1-byte copies to the
 * host (a run-time If's condition read). Compiled against cuda.h, so every definition matches
 * the driver's declaration. */
#include <cuda.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*emu_launch_fn)(void*, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                              int, void**);
typedef struct { void* fn; int nargs; } fake_function;

static void* kernels;
static emu_launch_fn emu_launch;
static unsigned long launches, reads;

static void report(void) { fprintf(stderr, "fake: launches %lu reads %lu\n", launches, reads); }

CUresult cuInit(unsigned int flags) {
  (void)flags;
  kernels = dlopen(getenv("PYC_EMU_KERNELS"), RTLD_NOW | RTLD_LOCAL);
  if (!kernels) return CUDA_ERROR_NO_DEVICE;
  emu_launch = (emu_launch_fn)dlsym(kernels, "pyc_emu_launch");
  atexit(report);
  return emu_launch ? CUDA_SUCCESS : CUDA_ERROR_NO_DEVICE;
}
CUresult cuDeviceGet(CUdevice* device, int ordinal) { *device = ordinal; return CUDA_SUCCESS; }
CUresult cuDevicePrimaryCtxRetain(CUcontext* context, CUdevice device) {
  (void)device;
  *context = (CUcontext)&kernels;
  return CUDA_SUCCESS;
}
CUresult cuDevicePrimaryCtxRelease(CUdevice device) { (void)device; return CUDA_SUCCESS; }
CUresult cuCtxPushCurrent(CUcontext context) { (void)context; return CUDA_SUCCESS; }
CUresult cuCtxPopCurrent(CUcontext* context) { *context = (CUcontext)&kernels; return CUDA_SUCCESS; }
CUresult cuCtxSynchronize(void) { return CUDA_SUCCESS; }
CUresult cuStreamCreate(CUstream* stream, unsigned int flags) {
  (void)flags;
  *stream = (CUstream)&emu_launch;
  return CUDA_SUCCESS;
}
CUresult cuStreamDestroy(CUstream stream) { (void)stream; return CUDA_SUCCESS; }
CUresult cuStreamSynchronize(CUstream stream) { (void)stream; return CUDA_SUCCESS; }
CUresult cuModuleLoadData(CUmodule* module, const void* image) {
  (void)image;
  *module = (CUmodule)kernels;
  return CUDA_SUCCESS;
}
CUresult cuModuleUnload(CUmodule module) { (void)module; return CUDA_SUCCESS; }

/* the parameter count of kernel `name` from PYC_EMU_ARGS, -1 where it is not listed */
static int parameter_count(const char* name) {
  const char* list = getenv("PYC_EMU_ARGS");
  const size_t length = strlen(name);
  for (const char* at = list; at && *at;) {
    const char* end = strchr(at, ',');
    if (strncmp(at, name, length) == 0 && at[length] == '=') return atoi(at + length + 1);
    at = end ? end + 1 : NULL;
  }
  return -1;
}

CUresult cuModuleGetFunction(CUfunction* function, CUmodule module, const char* name) {
  (void)module;
  fake_function* f = (fake_function*)calloc(1, sizeof *f);  /* freed at exit */
  f->fn = dlsym(kernels, name);
  f->nargs = parameter_count(name);
  if (!f->fn || f->nargs < 0) {
    free(f);
    return CUDA_ERROR_NOT_FOUND;
  }
  *function = (CUfunction)f;
  return CUDA_SUCCESS;
}
CUresult cuFuncSetAttribute(CUfunction function, CUfunction_attribute attribute, int value) {
  (void)function; (void)attribute; (void)value;
  return CUDA_SUCCESS;
}
CUresult cuMemAlloc(CUdeviceptr* pointer, size_t bytes) {
  void* block = malloc(bytes ? bytes : 1);
  *pointer = (CUdeviceptr)block;
  return block ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}
CUresult cuMemFree(CUdeviceptr pointer) { free((void*)pointer); return CUDA_SUCCESS; }
CUresult cuMemAllocHost(void** pointer, size_t bytes) {
  *pointer = malloc(bytes ? bytes : 1);
  return *pointer ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}
CUresult cuMemFreeHost(void* pointer) { free(pointer); return CUDA_SUCCESS; }
CUresult cuMemcpyHtoD(CUdeviceptr dst, const void* src, size_t bytes) {
  memcpy((void*)dst, src, bytes);
  return CUDA_SUCCESS;
}
CUresult cuMemcpyHtoDAsync(CUdeviceptr dst, const void* src, size_t bytes, CUstream stream) {
  (void)stream;
  return cuMemcpyHtoD(dst, src, bytes);
}
CUresult cuMemcpyDtoHAsync(void* dst, CUdeviceptr src, size_t bytes, CUstream stream) {
  (void)stream;
  if (bytes == 1) ++reads;
  memcpy(dst, (const void*)src, bytes);
  return CUDA_SUCCESS;
}
CUresult cuMemsetD32(CUdeviceptr dst, unsigned int value, size_t count) {
  for (size_t i = 0; i < count; ++i) ((unsigned int*)dst)[i] = value;
  return CUDA_SUCCESS;
}
CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned int value, size_t count, CUstream stream) {
  (void)stream;
  return cuMemsetD32(dst, value, count);
}
CUresult cuLaunchKernel(CUfunction function, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned shared, CUstream stream, void** params,
                        void** extra) {
  (void)shared; (void)stream; (void)extra;
  const fake_function* f = (const fake_function*)function;
  void* values[64];
  if (f->nargs > 64) return CUDA_ERROR_INVALID_VALUE;
  for (int i = 0; i < f->nargs; ++i) values[i] = *(void**)params[i];  /* read now, as CUDA */
  emu_launch(f->fn, gx, gy, gz, bx, by, bz, f->nargs, values);
  ++launches;
  return CUDA_SUCCESS;
}
CUresult cuLaunchKernelEx(const CUlaunchConfig* config, CUfunction function, void** params,
                          void** extra) {
  return cuLaunchKernel(function, config->gridDimX, config->gridDimY, config->gridDimZ,
                        config->blockDimX, config->blockDimY, config->blockDimZ,
                        config->sharedMemBytes, config->hStream, params, extra);
}
CUresult cuTensorMapEncodeTiled(CUtensorMap* map, CUtensorMapDataType dtype, cuuint32_t rank,
                                void* address, const cuuint64_t* dims, const cuuint64_t* strides,
                                const cuuint32_t* box, const cuuint32_t* element_strides,
                                CUtensorMapInterleave interleave, CUtensorMapSwizzle swizzle,
                                CUtensorMapL2promotion promotion, CUtensorMapFloatOOBfill fill) {
  (void)map; (void)dtype; (void)rank; (void)address; (void)dims; (void)strides; (void)box;
  (void)element_strides; (void)interleave; (void)swizzle; (void)promotion; (void)fill;
  return CUDA_ERROR_NOT_SUPPORTED;  /* the If cases use no TMA GEMM */
}
