// Entry points of a CPU-only build: the CUDA functions exist and report SZ_ENOCUDA.
#include "common.h"

namespace {
int no_cuda() {
  sz::fail("libsegzero_kernels was built without CUDA (CPU twin only)");
  return SZ_ENOCUDA;
}
}  // namespace

extern "C" int sz_built_with_cuda(void) { return 0; }
extern "C" int sz_cuda_device_count(void) { return -1; }

extern "C" int sz_preprocess_cuda(const uint8_t*, int, int, int, int, const uint8_t*, int, void*,
                                  int, int, uint8_t*, int, int, void*) {
  return no_cuda();
}
extern "C" int sz_postprocess_masks_cuda(const float*, int, int, int, int, int, uint32_t*,
                                         uint32_t*, void*) {
  return no_cuda();
}
