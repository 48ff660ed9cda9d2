// C ABI of libsegzero_kernels: fused pre-processing and mask post-processing.
//
// Return codes: 0 ok, SZ_EINVAL bad arguments (see sz_last_error), SZ_ECUDA CUDA failure,
// SZ_ENOCUDA library built without CUDA.
//
// Pre-processing reads one uint8 frame and writes, in one pass, any of:
//   sam_out:      [3, sam_size, sam_size] CHW, float32 or float16 (sam_dtype), normalised
//   reasoner_out: [reasoner_size, reasoner_size, 3] HWC uint8 (PIL bilinear)
// Pass NULL for a product you do not want. reasoner_flags: SZ_PIL_LEGACY_ORDER matches
// Pillow < 13 (always horizontal pass first); 0 matches Pillow >= 13's pass order.
// Frame formats (SZ_FMT_*): RGB (`src`: h rows of `stride` bytes, 3 bytes per pixel; `uv`
// NULL) or NV12 as camera and decoder buffers hold it: the luma plane at `src` (h rows of
// `stride` bytes) and the interleaved U,V plane at `uv` (h/2 rows of `uv_stride` bytes),
// two separate pointers and pitches; h and w even. NV12 is BT.601 (ITU-R BT.601-7), limited
// range (Y 16..235, Cb/Cr 16..240, SZ_FMT_NV12) or full range (SZ_FMT_NV12_FULL).
//
// Post-processing reads n mask logit planes [n, lh, lw] float32 and writes the OR of
// (bilinear upsample to out_h x out_w, align_corners=False) > 0 as
//   CPU:  out_h x out_w uint8 0/1 (`bytes`)
//   CUDA: out_h rows of ceil(out_w / 32) uint32 words, pixel x is bit x % 32 of word x / 32
// plus stats = {area, x1, y1, x2, y2} (uint32; box only meaningful when area > 0).
#pragma once

#include <stdint.h>

#if defined(_WIN32)
#define SZ_API __declspec(dllexport)
#else
#define SZ_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define SZ_OK 0
#define SZ_EINVAL -1
#define SZ_ECUDA -2
#define SZ_ENOCUDA -3

#define SZ_FMT_RGB 0
#define SZ_FMT_NV12 1
#define SZ_FMT_NV12_FULL 2

#define SZ_PIL_LEGACY_ORDER 1

#define SZ_F32 0
#define SZ_F16 1

SZ_API const char* sz_version(void);
// How it was built: "march=<CPU twin -march> cuda=<CUDA architectures, or off>"
SZ_API const char* sz_build_info(void);
SZ_API const char* sz_last_error(void);  // thread-local message of the last failed call
SZ_API int sz_built_with_cuda(void);
SZ_API int sz_cuda_device_count(void);  // < 0 when built without CUDA or the driver is missing

SZ_API int sz_preprocess_cpu(const uint8_t* src, int h, int w, int stride, int format,
                             const uint8_t* uv, int uv_stride, void* sam_out, int sam_size,
                             int sam_dtype, uint8_t* reasoner_out, int reasoner_size,
                             int reasoner_flags, int n_threads);

SZ_API int sz_postprocess_masks_cpu(const float* logits, int n, int lh, int lw, int out_h,
                                    int out_w, uint8_t* bytes, uint32_t* stats, int n_threads);

// CUDA entry points: every pointer is device memory; work is queued on `stream`
// (a cudaStream_t, NULL = default stream) and not synchronised.
SZ_API int sz_preprocess_cuda(const uint8_t* src, int h, int w, int stride, int format,
                              const uint8_t* uv, int uv_stride, void* sam_out, int sam_size,
                              int sam_dtype, uint8_t* reasoner_out, int reasoner_size,
                              int reasoner_flags, void* stream);

SZ_API int sz_postprocess_masks_cuda(const float* logits, int n, int lh, int lw, int out_h,
                                     int out_w, uint32_t* bits, uint32_t* stats, void* stream);

#ifdef __cplusplus
}
#endif
