// Per-pixel math shared by the CUDA kernels and the CPU twin.
//
// Every function here is SZ_HD: `__host__ __device__` under nvcc, plain `inline` C++
// otherwise, so both back ends run the same code. Both are compiled without FMA
// contraction (nvcc --fmad=false, g++ -ffp-contract=off), which keeps them bit-identical.
//
// References matched:
//  * SAM2 input: torchvision Resize((1024, 1024)) on the float tensor ToTensor() makes
//    (antialias=True: triangle filter whose support grows with the ratio when downscaling,
//    plain bilinear when upscaling), then Normalize(mean, std). Weights follow torch's
//    float/double promotions; horizontal pass first, then vertical.
//  * Reasoner input: PIL Image.resize(BILINEAR) on uint8 RGB: double weights turned into
//    22-bit fixed point, first pass rounded to uint8, then the second (pass order of
//    Pillow >= 13, or always horizontal first for older Pillow).
//  * Masks: F.interpolate(mode="bilinear", align_corners=False), threshold > 0.
//  * NV12: ITU-R BT.601-7 (Kr = 0.299, Kb = 0.114), limited (video) range by default
//    (Y 16..235, Cb/Cr 16..240, section 2.5.3) or full range; chroma nearest (each 2 x 2
//    block shares one U/V pair, 4:2:0 co-sited as NV12 stores it); 16-bit fixed point.
#pragma once

#include <stdint.h>

#if defined(__CUDACC__)
#define SZ_HD __host__ __device__ __forceinline__
#else
#define SZ_HD inline
#endif

namespace sz {

constexpr int kMaxTaps = 48;         // supports a downscale ratio up to ~23 (8000 px -> 840)
constexpr int kPilBits = 22;         // PIL's PRECISION_BITS for 8-bit images
constexpr int kSamSize = 1024;
constexpr int kReasonerSize = 840;
constexpr int kMaskSize = 256;

enum Format : int { kRGB = 0, kNV12Limited = 1, kNV12Full = 2 };
enum SamType : int { kF32 = 0, kF16 = 1 };

SZ_HD int imin(int a, int b) { return a < b ? a : b; }
SZ_HD int imax(int a, int b) { return a > b ? a : b; }
SZ_HD int clamp255(int v) { return v < 0 ? 0 : (v > 255 ? 255 : v); }

// Number of taps a resize of `in_size` to `out_size` needs (both filters).
SZ_HD int max_taps(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double support = scale >= 1.0 ? scale : 1.0;
  int s = static_cast<int>(support);
  if (s < support) s += 1;
  return 2 * s + 1;
}

// ---- torch antialiased bilinear weights (float, torch's promotions kept) ----------------

SZ_HD float torch_tri(float x) {
  x = x < 0.0f ? -x : x;
  return x < 1.0f ? static_cast<float>(1.0 - static_cast<double>(x)) : 0.0f;
}

// Taps of output index i: first source index and normalised weights; returns the count.
SZ_HD int torch_taps(int i, int in_size, int out_size, int* first, float* w) {
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  const float support = scale >= 1.0f ? scale : 1.0f;
  const float invscale = scale >= 1.0f ? static_cast<float>(1.0 / scale) : 1.0f;
  const float center = static_cast<float>(scale * (i + 0.5));
  const int xmin = imax(static_cast<int>(static_cast<double>(center - support) + 0.5), 0);
  int n = imin(static_cast<int>(static_cast<double>(center + support) + 0.5), in_size) - xmin;
  n = imax(imin(n, kMaxTaps), 0);
  float total = 0.0f;
  for (int j = 0; j < n; ++j) {
    const float d = static_cast<float>(j + xmin) - center;
    const float v = torch_tri(static_cast<float>((static_cast<double>(d) + 0.5) * invscale));
    w[j] = v;
    total += v;
  }
  if (total != 0.0f) {
    for (int j = 0; j < n; ++j) w[j] /= total;
  }
  *first = xmin;
  return n;
}

// ---- PIL bilinear weights (double, then 22-bit fixed point) -----------------------------

SZ_HD double pil_tri(double x) {
  x = x < 0.0 ? -x : x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

SZ_HD int pil_taps(int i, int in_size, int out_size, int* first, int32_t* k) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = filterscale;  // bilinear support 1.0 times the filter scale
  const double center = (i + 0.5) * scale;
  const double ss = 1.0 / filterscale;
  int xmin = static_cast<int>(center - support + 0.5);
  if (xmin < 0) xmin = 0;
  int xmax = static_cast<int>(center + support + 0.5);
  if (xmax > in_size) xmax = in_size;
  const int n = imax(imin(xmax - xmin, kMaxTaps), 0);
  double w[kMaxTaps];
  double ww = 0.0;
  for (int x = 0; x < n; ++x) {
    w[x] = pil_tri((x + xmin - center + 0.5) * ss);
    ww += w[x];
  }
  for (int x = 0; x < n; ++x) {
    const double v = ww != 0.0 ? w[x] / ww : w[x];
    k[x] = v < 0.0 ? static_cast<int32_t>(-0.5 + v * (1 << kPilBits))
                   : static_cast<int32_t>(0.5 + v * (1 << kPilBits));
  }
  *first = xmin;
  return n;
}

SZ_HD int pil_clip8(int32_t acc) { return clamp255(acc >> kPilBits); }

// ---- source pixels: packed RGB or NV12 ---------------------------------------------------

struct Source {
  const uint8_t* data;  // RGB: h rows of `stride` bytes; NV12: the h luma rows
  int h;
  int w;
  int stride;  // bytes per row (RGB >= 3 w, NV12 luma >= w)
  int format;  // Format
  const uint8_t* uv = nullptr;  // NV12: h/2 rows of interleaved U, V (`uv_stride` bytes each)
  int uv_stride = 0;
};

SZ_HD void yuv_to_rgb(int y, int u, int v, int full_range, int rgb[3]) {
  const int d = u - 128;
  const int e = v - 128;
  if (full_range) {
    const int c = y * 65536 + 32768;
    rgb[0] = clamp255((c + 91881 * e) >> 16);
    rgb[1] = clamp255((c - 22553 * d - 46802 * e) >> 16);
    rgb[2] = clamp255((c + 116130 * d) >> 16);
  } else {
    const int c = (y - 16) * 76309 + 32768;
    rgb[0] = clamp255((c + 104597 * e) >> 16);
    rgb[1] = clamp255((c - 25675 * d - 53279 * e) >> 16);
    rgb[2] = clamp255((c + 132201 * d) >> 16);
  }
}

template <int F>
SZ_HD void load_rgb(const Source& s, int y, int x, int rgb[3]) {
  if (F == kRGB) {
    const uint8_t* p = s.data + static_cast<int64_t>(y) * s.stride + 3 * x;
    rgb[0] = p[0];
    rgb[1] = p[1];
    rgb[2] = p[2];
    return;
  }
  const int luma = s.data[static_cast<int64_t>(y) * s.stride + x];
  const uint8_t* uv = s.uv + static_cast<int64_t>(y >> 1) * s.uv_stride + (x & ~1);
  yuv_to_rgb(luma, uv[0], uv[1], F == kNV12Full, rgb);
}

#if !defined(__CUDA_ARCH__)
// v / 255.0f for every byte, folded at compile time (IEEE division, same values).
struct UnitTable {
  float v[256];
  constexpr UnitTable() : v() {
    for (int i = 0; i < 256; ++i) v[i] = static_cast<float>(i) / 255.0f;
  }
};
inline constexpr UnitTable kUnitTable{};
#endif

// A byte as ToTensor() scales it: v / 255 in float32.
SZ_HD float unit_u8(int v) {
#if defined(__CUDA_ARCH__)
  return static_cast<float>(v) / 255.0f;
#else
  return kUnitTable.v[v];
#endif
}

// ---- one output pixel of each product, from 1-D building blocks ------------------------
// The CUDA kernel composes the blocks per output pixel; the CPU twin runs the first pass
// once per (source line, output index) and caches it. Same functions, same operation order.

// SAM2 first pass: weighted sum of nx pixels of source row y (torch: width first).
template <int F>
SZ_HD void sam_row_sum(const Source& s, int y, int x0, int nx, const float* wx, float row[3]) {
  for (int ix = 0; ix < nx; ++ix) {
    int rgb[3];
    load_rgb<F>(s, y, x0 + ix, rgb);
    for (int c = 0; c < 3; ++c) {
      const float v = unit_u8(rgb[c]);
      row[c] = ix == 0 ? v * wx[0] : row[c] + v * wx[ix];
    }
  }
}

// SAM2 second pass, one tap: acc (+)= row * w.
SZ_HD void sam_accumulate(float acc[3], const float row[3], float w, bool first) {
  for (int c = 0; c < 3; ++c) acc[c] = first ? row[c] * w : acc[c] + row[c] * w;
}

// Normalize(mean, std) of SAM2Transforms.
SZ_HD void sam_normalize(const float acc[3], float out[3]) {
  const float mean[3] = {0.485f, 0.456f, 0.406f};
  const float stdv[3] = {0.229f, 0.224f, 0.225f};
  for (int c = 0; c < 3; ++c) out[c] = (acc[c] - mean[c]) / stdv[c];
}

// SAM2 input pixel: normalised R, G, B.
template <int F>
SZ_HD void sam_pixel(const Source& s, int y0, int ny, const float* wy, int x0, int nx,
                     const float* wx, float out[3]) {
  float acc[3] = {0.0f, 0.0f, 0.0f};
  for (int iy = 0; iy < ny; ++iy) {
    float row[3] = {0.0f, 0.0f, 0.0f};
    sam_row_sum<F>(s, y0 + iy, x0, nx, wx, row);
    sam_accumulate(acc, row, wy[iy], iy == 0);
  }
  sam_normalize(acc, out);
}

// Pass order of PIL's two-pass resize. Pillow >= 13 runs the vertical pass first when the
// height shrinks by more than twice as many pixels as the width; older Pillow always runs
// the horizontal pass first (legacy = 1). The first pass is rounded to uint8.
SZ_HD bool pil_vertical_first(int in_h, int in_w, int out_h, int out_w, int legacy) {
  const int dy = in_h - out_h;
  return !legacy && dy > 0 && dy > (in_w - out_w) * 2;
}

// PIL first pass at one point: n taps from (y, x) stepping (dy, dx), rounded to uint8.
template <int F>
SZ_HD void pil_first_pass(const Source& s, int y, int x, int dy, int dx, int n,
                          const int32_t* k, int out[3]) {
  const int32_t half = 1 << (kPilBits - 1);
  int32_t acc[3] = {half, half, half};
  for (int i = 0; i < n; ++i) {
    int rgb[3];
    load_rgb<F>(s, y + i * dy, x + i * dx, rgb);
    for (int c = 0; c < 3; ++c) acc[c] += rgb[c] * k[i];
  }
  for (int c = 0; c < 3; ++c) out[c] = pil_clip8(acc[c]);
}

// PIL second pass, one tap: acc += v * k (acc starts at 1 << (kPilBits - 1)).
SZ_HD void pil_accumulate(int32_t acc[3], const int v[3], int32_t k) {
  for (int c = 0; c < 3; ++c) acc[c] += v[c] * k;
}

SZ_HD void pil_finish(const int32_t acc[3], uint8_t out[3]) {
  for (int c = 0; c < 3; ++c) out[c] = static_cast<uint8_t>(pil_clip8(acc[c]));
}

// Reasoner input pixel: PIL fixed point, the first pass rounded to uint8.
template <int F>
SZ_HD void pil_pixel(const Source& s, int y0, int ny, const int32_t* ky, int x0, int nx,
                     const int32_t* kx, bool vertical_first, uint8_t out[3]) {
  const int32_t half = 1 << (kPilBits - 1);
  int32_t acc[3] = {half, half, half};
  int v[3];
  if (vertical_first) {
    for (int ix = 0; ix < nx; ++ix) {
      pil_first_pass<F>(s, y0, x0 + ix, 1, 0, ny, ky, v);
      pil_accumulate(acc, v, kx[ix]);
    }
  } else {
    for (int iy = 0; iy < ny; ++iy) {
      pil_first_pass<F>(s, y0 + iy, x0, 0, 1, nx, kx, v);
      pil_accumulate(acc, v, ky[iy]);
    }
  }
  pil_finish(acc, out);
}

// float -> IEEE half bits, round to nearest even (same as numpy's astype(float16)).
SZ_HD uint16_t float_to_half(float f) {
  union {
    float f;
    uint32_t u;
  } b;
  b.f = f;
  const uint32_t sign = (b.u >> 16) & 0x8000u;
  const uint32_t a = b.u & 0x7fffffffu;
  if (a >= 0x7f800000u) return static_cast<uint16_t>(sign | (a > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (a < 0x38800000u) {                                                // half subnormal
    if (a <= 0x33000000u) return static_cast<uint16_t>(sign);           // <= 2^-25 -> 0
    const uint32_t mant = (a & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(a >> 23);  // 14..24
    uint32_t m = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (m & 1u))) m += 1u;
    return static_cast<uint16_t>(sign | m);
  }
  const uint32_t r = a - (112u << 23);
  return static_cast<uint16_t>(sign | ((r + 0x0fffu + ((r >> 13) & 1u)) >> 13));
}

// ---- mask post-processing ---------------------------------------------------------------

// 32-bit words per bitmask row.
SZ_HD int words_per_row(int w) { return (w + 31) / 32; }

// torch's bilinear source index and weights (align_corners=False, float math).
SZ_HD void linear_src(int dst, int in_size, int out_size, int* i0, int* i1, float* l0,
                      float* l1) {
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  float real = scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
  if (real < 0.0f) real = 0.0f;
  int idx = static_cast<int>(real);  // real >= 0: truncation is floor
  if (idx > in_size - 1) idx = in_size - 1;
  *i0 = idx;
  *i1 = idx + (idx < in_size - 1 ? 1 : 0);
  float lam = real - static_cast<float>(idx);
  lam = lam < 0.0f ? 0.0f : (lam > 1.0f ? 1.0f : lam);
  *l1 = lam;
  *l0 = 1.0f - lam;
}

// Upsampled logit of one object at one output pixel (torch's operation order).
SZ_HD float mask_logit(const float* m, int lw, int y0, int y1, float hy0, float hy1, int x0,
                       int x1, float wx0, float wx1) {
  const float* r0 = m + static_cast<int64_t>(y0) * lw;
  const float* r1 = m + static_cast<int64_t>(y1) * lw;
  const float top = wx0 * r0[x0] + wx1 * r0[x1];
  const float bot = wx0 * r1[x0] + wx1 * r1[x1];
  return hy0 * top + hy1 * bot;
}

// OR over n objects of (upsampled logit > 0).
SZ_HD bool mask_pixel(const float* logits, int n, int lh, int lw, int y0, int y1, float hy0,
                      float hy1, int x0, int x1, float wx0, float wx1) {
  const int64_t plane = static_cast<int64_t>(lh) * lw;
  for (int k = 0; k < n; ++k) {
    if (mask_logit(logits + k * plane, lw, y0, y1, hy0, hy1, x0, x1, wx0, wx1) > 0.0f) {
      return true;
    }
  }
  return false;
}

}  // namespace sz
