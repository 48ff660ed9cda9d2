// Host-side helpers shared by the CPU twin and the CUDA launchers: argument checks and the
// last-error message.
#pragma once

#include <stdint.h>

#include "pixel_math.h"
#include "segzero_kernels.h"

namespace sz {

// Records a message for sz_last_error() and returns SZ_EINVAL (or `code`).
int fail(const char* fmt, ...);

// Checks the pre-processing arguments; returns SZ_OK or fails with a message.
int check_preprocess(const uint8_t* src, int h, int w, int stride, int format,
                     const uint8_t* uv, int uv_stride, const void* sam_out, int sam_size,
                     int sam_dtype, const uint8_t* reasoner_out, int reasoner_size);

// Checks the post-processing arguments; returns SZ_OK or fails with a message.
int check_postprocess(const float* logits, int n, int lh, int lw, int out_h, int out_w);

}  // namespace sz
