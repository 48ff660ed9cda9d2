// CPU twin of the CUDA kernels: the same functions of pixel_math.h on a few std::threads.
// Filter taps are computed once per row / column, and the first resize pass is cached per
// source line instead of recomputed per output pixel (same operations, same order, so the
// results are bit-identical to the kernels'); NV12 is converted once per source pixel.
#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "common.h"

namespace sz {
namespace {

template <typename T>
struct TapTable {
  std::vector<int> first;
  std::vector<int> count;
  std::vector<T> weights;  // kMaxTaps per output index
  const T* at(int i) const { return weights.data() + static_cast<size_t>(i) * kMaxTaps; }
};

TapTable<float> torch_table(int in_size, int out_size) {
  TapTable<float> t;
  t.first.resize(out_size);
  t.count.resize(out_size);
  t.weights.assign(static_cast<size_t>(out_size) * kMaxTaps, 0.0f);
  for (int i = 0; i < out_size; ++i) {
    t.count[i] = torch_taps(i, in_size, out_size, &t.first[i], &t.weights[i * kMaxTaps]);
  }
  return t;
}

TapTable<int32_t> pil_table(int in_size, int out_size) {
  TapTable<int32_t> t;
  t.first.resize(out_size);
  t.count.resize(out_size);
  t.weights.assign(static_cast<size_t>(out_size) * kMaxTaps, 0);
  for (int i = 0; i < out_size; ++i) {
    t.count[i] = pil_taps(i, in_size, out_size, &t.first[i], &t.weights[i * kMaxTaps]);
  }
  return t;
}

int resolve_threads(int n_threads, int rows) {
  int n = n_threads > 0 ? n_threads : static_cast<int>(std::thread::hardware_concurrency());
  n = std::max(1, std::min(n, 16));
  return std::min(n, std::max(1, rows / 16));
}

// Runs fn(row_begin, row_end) over [0, rows) on n threads (the caller's thread included).
template <typename Fn>
void parallel_rows(int rows, int n_threads, Fn fn) {
  const int n = resolve_threads(n_threads, rows);
  if (n == 1) {
    fn(0, rows);
    return;
  }
  std::vector<std::thread> pool;
  const int chunk = (rows + n - 1) / n;
  for (int t = 1; t < n; ++t) {
    const int b = t * chunk;
    const int e = std::min(rows, b + chunk);
    if (b < e) pool.emplace_back(fn, b, e);
  }
  fn(0, std::min(rows, chunk));
  for (auto& th : pool) th.join();
}

// Source lines [lo, hi) that a tap table reads.
template <typename T>
void tap_span(const TapTable<T>& t, int* lo, int* hi) {
  *lo = t.first[0];
  *hi = t.first[0] + t.count[0];
  for (size_t i = 0; i < t.first.size(); ++i) {
    *lo = std::min(*lo, t.first[i]);
    *hi = std::max(*hi, t.first[i] + t.count[i]);
  }
}

// SAM2 input from an RGB source: first pass cached per (source row, output column).
void sam_two_pass(const Source& s, int size, int dtype, void* out, int n_threads) {
  const auto ty = torch_table(s.h, size);
  const auto tx = torch_table(s.w, size);
  int ylo, yhi;
  tap_span(ty, &ylo, &yhi);
  std::vector<float> rows(static_cast<size_t>(yhi - ylo) * size * 3);
  parallel_rows(yhi - ylo, n_threads, [&](int b, int e) {
    for (int r = b; r < e; ++r) {
      float* dst = rows.data() + static_cast<size_t>(r) * size * 3;
      for (int ox = 0; ox < size; ++ox) {
        sam_row_sum<kRGB>(s, ylo + r, tx.first[ox], tx.count[ox], tx.at(ox), dst + 3 * ox);
      }
    }
  });
  const int64_t plane = static_cast<int64_t>(size) * size;
  parallel_rows(size, n_threads, [&](int b, int e) {
    for (int oy = b; oy < e; ++oy) {
      const float* w = ty.at(oy);
      for (int ox = 0; ox < size; ++ox) {
        float acc[3] = {0.0f, 0.0f, 0.0f};
        for (int iy = 0; iy < ty.count[oy]; ++iy) {
          const size_t r = static_cast<size_t>(ty.first[oy] + iy - ylo);
          sam_accumulate(acc, rows.data() + (r * size + ox) * 3, w[iy], iy == 0);
        }
        float v[3];
        sam_normalize(acc, v);
        const int64_t o = static_cast<int64_t>(oy) * size + ox;
        if (dtype == kF32) {
          for (int c = 0; c < 3; ++c) static_cast<float*>(out)[c * plane + o] = v[c];
        } else {
          uint16_t* half = static_cast<uint16_t*>(out);
          for (int c = 0; c < 3; ++c) half[c * plane + o] = float_to_half(v[c]);
        }
      }
    }
  });
}

// Reasoner input from an RGB source, PIL's two passes with the first one cached.
void pil_two_pass(const Source& s, int size, bool vfirst, uint8_t* out, int n_threads) {
  const auto ky = pil_table(s.h, size);
  const auto kx = pil_table(s.w, size);
  const int32_t half = 1 << (kPilBits - 1);
  // tmp[i][j]: first pass at (source row i, output column j), or at (output row i, source
  // column j) when the vertical pass runs first.
  int lo, hi;
  tap_span(vfirst ? kx : ky, &lo, &hi);
  const int n_i = vfirst ? size : hi - lo;
  const int n_j = vfirst ? hi - lo : size;
  std::vector<uint8_t> tmp(static_cast<size_t>(n_i) * n_j * 3);
  parallel_rows(n_i, n_threads, [&](int b, int e) {
    for (int i = b; i < e; ++i) {
      uint8_t* dst = tmp.data() + static_cast<size_t>(i) * n_j * 3;
      for (int j = 0; j < n_j; ++j) {
        int v[3];
        if (vfirst) {
          pil_first_pass<kRGB>(s, ky.first[i], lo + j, 1, 0, ky.count[i], ky.at(i), v);
        } else {
          pil_first_pass<kRGB>(s, lo + i, kx.first[j], 0, 1, kx.count[j], kx.at(j), v);
        }
        for (int c = 0; c < 3; ++c) dst[3 * j + c] = static_cast<uint8_t>(v[c]);
      }
    }
  });
  parallel_rows(size, n_threads, [&](int b, int e) {
    for (int oy = b; oy < e; ++oy) {
      for (int ox = 0; ox < size; ++ox) {
        int32_t acc[3] = {half, half, half};
        const int n = vfirst ? kx.count[ox] : ky.count[oy];
        const int32_t* k = vfirst ? kx.at(ox) : ky.at(oy);
        for (int t = 0; t < n; ++t) {
          const size_t i = vfirst ? oy : static_cast<size_t>(ky.first[oy] + t - lo);
          const size_t j = vfirst ? static_cast<size_t>(kx.first[ox] + t - lo) : ox;
          const uint8_t* p = tmp.data() + (i * n_j + j) * 3;
          const int v[3] = {p[0], p[1], p[2]};
          pil_accumulate(acc, v, k[t]);
        }
        pil_finish(acc, out + (static_cast<size_t>(oy) * size + ox) * 3);
      }
    }
  });
}

}  // namespace
}  // namespace sz

extern "C" int sz_preprocess_cpu(const uint8_t* src, int h, int w, int stride, int format,
                                 const uint8_t* uv, int uv_stride, void* sam_out, int sam_size,
                                 int sam_dtype, uint8_t* reasoner_out, int reasoner_size,
                                 int reasoner_flags, int n_threads) {
  using namespace sz;
  const int rc = check_preprocess(src, h, w, stride, format, uv, uv_stride, sam_out, sam_size,
                                  sam_dtype, reasoner_out, reasoner_size);
  if (rc != SZ_OK) return rc;
  // NV12 is converted once per source pixel (the same yuv_to_rgb the kernel applies per
  // tap), so the loops below read RGB: identical values, far fewer conversions on a CPU.
  std::vector<uint8_t> rgb;
  Source s{src, h, w, stride, format, uv, uv_stride};
  if (format != kRGB) {
    rgb.resize(static_cast<size_t>(h) * w * 3);
    parallel_rows(h, n_threads, [&](int b, int e) {
      for (int y = b; y < e; ++y) {
        uint8_t* row = rgb.data() + static_cast<size_t>(y) * w * 3;
        for (int x = 0; x < w; ++x) {
          int px[3];
          if (format == kNV12Limited) {
            load_rgb<kNV12Limited>(s, y, x, px);
          } else {
            load_rgb<kNV12Full>(s, y, x, px);
          }
          for (int c = 0; c < 3; ++c) row[3 * x + c] = static_cast<uint8_t>(px[c]);
        }
      }
    });
    s = Source{rgb.data(), h, w, 3 * w, kRGB};
  }
  if (sam_out != nullptr) sam_two_pass(s, sam_size, sam_dtype, sam_out, n_threads);
  if (reasoner_out != nullptr) {
    const bool vfirst = pil_vertical_first(h, w, reasoner_size, reasoner_size,
                                           reasoner_flags & SZ_PIL_LEGACY_ORDER);
    pil_two_pass(s, reasoner_size, vfirst, reasoner_out, n_threads);
  }
  return SZ_OK;
}

extern "C" int sz_postprocess_masks_cpu(const float* logits, int n, int lh, int lw, int out_h,
                                        int out_w, uint8_t* bytes, uint32_t* stats,
                                        int n_threads) {
  using namespace sz;
  const int rc = check_postprocess(logits, n, lh, lw, out_h, out_w);
  if (rc != SZ_OK) return rc;
  if (bytes == nullptr) return fail("mask output pointer is NULL");
  std::vector<int> x0(out_w), x1(out_w);
  std::vector<float> wx0(out_w), wx1(out_w);
  for (int x = 0; x < out_w; ++x) linear_src(x, lw, out_w, &x0[x], &x1[x], &wx0[x], &wx1[x]);
  struct Part {
    uint64_t area = 0;
    int x1 = 1 << 30, y1 = 1 << 30, x2 = -1, y2 = -1;
  };
  const int nt = resolve_threads(n_threads, out_h);
  std::vector<Part> parts(static_cast<size_t>(nt) + 1);
  const int chunk = (out_h + nt - 1) / nt;
  parallel_rows(out_h, n_threads, [&](int b, int e) {
    Part& p = parts[b / chunk];
    for (int y = b; y < e; ++y) {
      int ya, yb;
      float hy0, hy1;
      linear_src(y, lh, out_h, &ya, &yb, &hy0, &hy1);
      uint8_t* yrow = bytes + static_cast<int64_t>(y) * out_w;
      int row_first = -1, row_last = -1;
      uint64_t row_area = 0;
      for (int x = 0; x < out_w; ++x) {
        const bool on =
            mask_pixel(logits, n, lh, lw, ya, yb, hy0, hy1, x0[x], x1[x], wx0[x], wx1[x]);
        if (on) {
          if (row_first < 0) row_first = x;
          row_last = x;
          ++row_area;
        }
        yrow[x] = on ? 1 : 0;
      }
      if (row_area) {
        p.area += row_area;
        p.x1 = std::min(p.x1, row_first);
        p.x2 = std::max(p.x2, row_last);
        p.y1 = std::min(p.y1, y);
        p.y2 = std::max(p.y2, y);
      }
    }
  });
  Part all;
  for (const Part& p : parts) {
    all.area += p.area;
    all.x1 = std::min(all.x1, p.x1);
    all.y1 = std::min(all.y1, p.y1);
    all.x2 = std::max(all.x2, p.x2);
    all.y2 = std::max(all.y2, p.y2);
  }
  if (stats != nullptr) {
    stats[0] = static_cast<uint32_t>(all.area);
    stats[1] = all.area ? static_cast<uint32_t>(all.x1) : 0u;
    stats[2] = all.area ? static_cast<uint32_t>(all.y1) : 0u;
    stats[3] = all.area ? static_cast<uint32_t>(all.x2) : 0u;
    stats[4] = all.area ? static_cast<uint32_t>(all.y2) : 0u;
  }
  return SZ_OK;
}
