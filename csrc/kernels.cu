// CUDA kernels: each thread runs the shared per-pixel functions of pixel_math.h.
// Pre-processing is one launch that writes both products (SAM2 and reasoner input);
// post-processing is one launch (after a one-thread stats reset) that writes the bitmask,
// area and box.
#include <cuda_runtime.h>

#include "common.h"

namespace sz {
namespace {

int cuda_fail(cudaError_t err, const char* what) {
  fail("CUDA error in %s: %s", what, cudaGetErrorString(err));
  return SZ_ECUDA;
}

#define SZ_CUDA_TRY(expr)                                   \
  do {                                                      \
    const cudaError_t err_ = (expr);                        \
    if (err_ != cudaSuccess) return cuda_fail(err_, #expr); \
  } while (0)

__global__ void preprocess_kernel(Source s, void* sam_out, int sam_size, int sam_dtype,
                                  uint8_t* reasoner_out, int reasoner_size,
                                  int reasoner_flags) {
  const int64_t sam_px = sam_out ? static_cast<int64_t>(sam_size) * sam_size : 0;
  const int64_t reasoner_px =
      reasoner_out ? static_cast<int64_t>(reasoner_size) * reasoner_size : 0;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t < sam_px) {
    const int oy = static_cast<int>(t / sam_size);
    const int ox = static_cast<int>(t % sam_size);
    int fy, fx;
    float wy[kMaxTaps], wx[kMaxTaps];
    const int ny = torch_taps(oy, s.h, sam_size, &fy, wy);
    const int nx = torch_taps(ox, s.w, sam_size, &fx, wx);
    float v[3];
    if (s.format == kRGB) {
      sam_pixel<kRGB>(s, fy, ny, wy, fx, nx, wx, v);
    } else if (s.format == kNV12Limited) {
      sam_pixel<kNV12Limited>(s, fy, ny, wy, fx, nx, wx, v);
    } else {
      sam_pixel<kNV12Full>(s, fy, ny, wy, fx, nx, wx, v);
    }
    if (sam_dtype == kF32) {
      float* out = static_cast<float*>(sam_out);
      for (int c = 0; c < 3; ++c) out[c * sam_px + t] = v[c];
    } else {
      uint16_t* out = static_cast<uint16_t*>(sam_out);
      for (int c = 0; c < 3; ++c) out[c * sam_px + t] = float_to_half(v[c]);
    }
  } else if (t < sam_px + reasoner_px) {
    const int64_t r = t - sam_px;
    const int oy = static_cast<int>(r / reasoner_size);
    const int ox = static_cast<int>(r % reasoner_size);
    int fy, fx;
    int32_t ky[kMaxTaps], kx[kMaxTaps];
    const int ny = pil_taps(oy, s.h, reasoner_size, &fy, ky);
    const int nx = pil_taps(ox, s.w, reasoner_size, &fx, kx);
    const bool vfirst = pil_vertical_first(s.h, s.w, reasoner_size, reasoner_size,
                                           reasoner_flags & SZ_PIL_LEGACY_ORDER);
    uint8_t* out = reasoner_out + 3 * r;
    if (s.format == kRGB) {
      pil_pixel<kRGB>(s, fy, ny, ky, fx, nx, kx, vfirst, out);
    } else if (s.format == kNV12Limited) {
      pil_pixel<kNV12Limited>(s, fy, ny, ky, fx, nx, kx, vfirst, out);
    } else {
      pil_pixel<kNV12Full>(s, fy, ny, ky, fx, nx, kx, vfirst, out);
    }
  }
}

__global__ void reset_stats_kernel(uint32_t* stats) {
  stats[0] = 0u;
  stats[1] = 0xffffffffu;
  stats[2] = 0xffffffffu;
  stats[3] = 0u;
  stats[4] = 0u;
}

// Block = 32 x 8 threads: each warp covers 32 consecutive pixels of one row = one word.
__global__ void postprocess_kernel(const float* logits, int n, int lh, int lw, int out_h,
                                   int out_w, uint32_t* bits, uint32_t* stats) {
  __shared__ uint32_t s_stats[5];
  const int lane = threadIdx.x;
  const int x = blockIdx.x * 32 + lane;
  const int y = blockIdx.y * blockDim.y + threadIdx.y;
  if (lane == 0 && threadIdx.y == 0) {
    s_stats[0] = 0u;
    s_stats[1] = 0xffffffffu;
    s_stats[2] = 0xffffffffu;
    s_stats[3] = 0u;
    s_stats[4] = 0u;
  }
  __syncthreads();
  bool on = false;
  if (x < out_w && y < out_h) {
    int ya, yb, xa, xb;
    float hy0, hy1, wx0, wx1;
    linear_src(y, lh, out_h, &ya, &yb, &hy0, &hy1);
    linear_src(x, lw, out_w, &xa, &xb, &wx0, &wx1);
    on = mask_pixel(logits, n, lh, lw, ya, yb, hy0, hy1, xa, xb, wx0, wx1);
  }
  const uint32_t word = __ballot_sync(0xffffffffu, on);
  if (lane == 0 && y < out_h) {
    bits[static_cast<int64_t>(y) * words_per_row(out_w) + blockIdx.x] = word;
    if (word) {
      const uint32_t base = blockIdx.x * 32u;
      atomicAdd(&s_stats[0], static_cast<uint32_t>(__popc(word)));
      atomicMin(&s_stats[1], base + static_cast<uint32_t>(__ffs(word) - 1));
      atomicMin(&s_stats[2], static_cast<uint32_t>(y));
      atomicMax(&s_stats[3], base + 31u - static_cast<uint32_t>(__clz(word)));
      atomicMax(&s_stats[4], static_cast<uint32_t>(y));
    }
  }
  __syncthreads();
  if (lane == 0 && threadIdx.y == 0 && s_stats[0] != 0u) {
    atomicAdd(&stats[0], s_stats[0]);
    atomicMin(&stats[1], s_stats[1]);
    atomicMin(&stats[2], s_stats[2]);
    atomicMax(&stats[3], s_stats[3]);
    atomicMax(&stats[4], s_stats[4]);
  }
}

}  // namespace
}  // namespace sz

extern "C" int sz_built_with_cuda(void) { return 1; }

extern "C" int sz_cuda_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return n;
}

extern "C" int sz_preprocess_cuda(const uint8_t* src, int h, int w, int stride, int format,
                                  const uint8_t* uv, int uv_stride, void* sam_out, int sam_size,
                                  int sam_dtype, uint8_t* reasoner_out, int reasoner_size,
                                  int reasoner_flags, void* stream) {
  using namespace sz;
  const int rc = check_preprocess(src, h, w, stride, format, uv, uv_stride, sam_out, sam_size,
                                  sam_dtype, reasoner_out, reasoner_size);
  if (rc != SZ_OK) return rc;
  const int64_t total = (sam_out ? static_cast<int64_t>(sam_size) * sam_size : 0) +
                        (reasoner_out ? static_cast<int64_t>(reasoner_size) * reasoner_size : 0);
  const int threads = 128;
  const int blocks = static_cast<int>((total + threads - 1) / threads);
  const Source source{src, h, w, stride, format, uv, uv_stride};
  preprocess_kernel<<<blocks, threads, 0, static_cast<cudaStream_t>(stream)>>>(
      source, sam_out, sam_size, sam_dtype, reasoner_out, reasoner_size, reasoner_flags);
  SZ_CUDA_TRY(cudaGetLastError());
  return SZ_OK;
}

extern "C" int sz_postprocess_masks_cuda(const float* logits, int n, int lh, int lw, int out_h,
                                         int out_w, uint32_t* bits, uint32_t* stats,
                                         void* stream) {
  using namespace sz;
  const int rc = check_postprocess(logits, n, lh, lw, out_h, out_w);
  if (rc != SZ_OK) return rc;
  if (bits == nullptr || stats == nullptr) return fail("bits and stats must be device buffers");
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  reset_stats_kernel<<<1, 1, 0, st>>>(stats);
  const dim3 block(32, 8);
  const dim3 grid(words_per_row(out_w), (out_h + 7) / 8);
  postprocess_kernel<<<grid, block, 0, st>>>(logits, n, lh, lw, out_h, out_w, bits, stats);
  SZ_CUDA_TRY(cudaGetLastError());
  return SZ_OK;
}
