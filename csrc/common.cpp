// Argument checks and error messages shared by every entry point.
#include "common.h"

#include <cstdarg>
#include <cstdio>

namespace sz {

namespace {
thread_local char g_error[512] = "";
}  // namespace

int fail(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(g_error, sizeof(g_error), fmt, args);
  va_end(args);
  return SZ_EINVAL;
}

int check_preprocess(const uint8_t* src, int h, int w, int stride, int format,
                     const uint8_t* uv, int uv_stride, const void* sam_out, int sam_size,
                     int sam_dtype, const uint8_t* reasoner_out, int reasoner_size) {
  if (src == nullptr) return fail("source frame pointer is NULL");
  if (h <= 0 || w <= 0) return fail("frame size %d x %d (w x h) must be positive", w, h);
  if (format != kRGB && format != kNV12Limited && format != kNV12Full) {
    return fail("unknown frame format %d (0 RGB, 1 NV12, 2 NV12 full range)", format);
  }
  if (format == kRGB && stride < 3 * w) {
    return fail("RGB stride %d is smaller than 3 * width (%d)", stride, 3 * w);
  }
  if (format != kRGB) {
    if (stride < w) return fail("NV12 luma pitch %d is smaller than the width %d", stride, w);
    if (uv == nullptr) return fail("NV12 UV plane pointer is NULL");
    if (uv_stride < w) return fail("NV12 UV pitch %d is smaller than the width %d", uv_stride, w);
    if (h % 2 || w % 2) return fail("NV12 needs an even width and height, got %d x %d", w, h);
  }
  if (sam_out == nullptr && reasoner_out == nullptr) {
    return fail("no output requested (both sam_out and reasoner_out are NULL)");
  }
  if (sam_out != nullptr) {
    if (sam_size <= 0) return fail("sam_size %d must be positive", sam_size);
    if (sam_dtype != kF32 && sam_dtype != kF16) {
      return fail("sam_dtype %d must be 0 (float32) or 1 (float16)", sam_dtype);
    }
    if (max_taps(h, sam_size) > kMaxTaps || max_taps(w, sam_size) > kMaxTaps) {
      return fail("frame %d x %d is too large to resize to %d in one pass (max ratio %d)", w, h,
                  sam_size, (kMaxTaps - 1) / 2 - 1);
    }
  }
  if (reasoner_out != nullptr) {
    if (reasoner_size <= 0) return fail("reasoner_size %d must be positive", reasoner_size);
    if (max_taps(h, reasoner_size) > kMaxTaps || max_taps(w, reasoner_size) > kMaxTaps) {
      return fail("frame %d x %d is too large to resize to %d in one pass (max ratio %d)", w, h,
                  reasoner_size, (kMaxTaps - 1) / 2 - 1);
    }
  }
  return SZ_OK;
}

int check_postprocess(const float* logits, int n, int lh, int lw, int out_h, int out_w) {
  if (logits == nullptr) return fail("mask logits pointer is NULL");
  if (n <= 0) return fail("number of mask planes %d must be positive", n);
  if (lh <= 0 || lw <= 0) return fail("mask logits size %d x %d must be positive", lw, lh);
  if (out_h <= 0 || out_w <= 0) return fail("output size %d x %d must be positive", out_w, out_h);
  return SZ_OK;
}

}  // namespace sz

extern "C" const char* sz_last_error(void) { return sz::g_error; }

extern "C" const char* sz_version(void) { return "segzero_kernels 0.1.0"; }

#ifndef SEGZERO_BUILD_INFO
#define SEGZERO_BUILD_INFO "march=unknown cuda=unknown"
#endif
extern "C" const char* sz_build_info(void) { return SEGZERO_BUILD_INFO; }
