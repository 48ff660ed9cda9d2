// CPU twin of the CUDA kernels: the same per-pixel functions (pixel_math.h), looped over
// rows on a few std::threads. Filter taps are computed once per row / column and reused.
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

// Output rows [b, e) of the SAM2 input, source format F.
template <int F>
void sam_rows(const Source& s, const TapTable<float>& ty, const TapTable<float>& tx, int size,
              int dtype, void* out, int b, int e) {
  const int64_t plane = static_cast<int64_t>(size) * size;
  for (int oy = b; oy < e; ++oy) {
    for (int ox = 0; ox < size; ++ox) {
      float v[3];
      sam_pixel<F>(s, ty.first[oy], ty.count[oy], ty.at(oy), tx.first[ox], tx.count[ox],
                   tx.at(ox), v);
      const int64_t o = static_cast<int64_t>(oy) * size + ox;
      if (dtype == kF32) {
        for (int c = 0; c < 3; ++c) static_cast<float*>(out)[c * plane + o] = v[c];
      } else {
        uint16_t* half = static_cast<uint16_t*>(out);
        for (int c = 0; c < 3; ++c) half[c * plane + o] = float_to_half(v[c]);
      }
    }
  }
}

// Output rows [b, e) of the reasoner input, source format F.
template <int F>
void pil_rows(const Source& s, const TapTable<int32_t>& ky, const TapTable<int32_t>& kx,
              int size, bool vfirst, uint8_t* out, int b, int e) {
  for (int oy = b; oy < e; ++oy) {
    uint8_t* row = out + static_cast<int64_t>(oy) * size * 3;
    for (int ox = 0; ox < size; ++ox) {
      pil_pixel<F>(s, ky.first[oy], ky.count[oy], ky.at(oy), kx.first[ox], kx.count[ox],
                   kx.at(ox), vfirst, row + 3 * ox);
    }
  }
}

}  // namespace
}  // namespace sz

extern "C" int sz_preprocess_cpu(const uint8_t* src, int h, int w, int stride, int format,
                                 void* sam_out, int sam_size, int sam_dtype,
                                 uint8_t* reasoner_out, int reasoner_size, int reasoner_flags,
                                 int n_threads) {
  using namespace sz;
  const int rc = check_preprocess(src, h, w, stride, format, sam_out, sam_size, sam_dtype,
                                  reasoner_out, reasoner_size);
  if (rc != SZ_OK) return rc;
  // NV12 is converted once per source pixel (the same yuv_to_rgb the kernel applies per
  // tap), so the loops below read RGB: identical values, far fewer conversions on a CPU.
  std::vector<uint8_t> rgb;
  Source s{src, h, w, stride, format};
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
  if (sam_out != nullptr) {
    const auto ty = torch_table(h, sam_size);
    const auto tx = torch_table(w, sam_size);
    parallel_rows(sam_size, n_threads, [&](int b, int e) {
      sam_rows<kRGB>(s, ty, tx, sam_size, sam_dtype, sam_out, b, e);
    });
  }
  if (reasoner_out != nullptr) {
    const auto ky = pil_table(h, reasoner_size);
    const auto kx = pil_table(w, reasoner_size);
    const bool vfirst = pil_vertical_first(h, w, reasoner_size, reasoner_size,
                                           reasoner_flags & SZ_PIL_LEGACY_ORDER);
    parallel_rows(reasoner_size, n_threads, [&](int b, int e) {
      pil_rows<kRGB>(s, ky, kx, reasoner_size, vfirst, reasoner_out, b, e);
    });
  }
  return SZ_OK;
}

extern "C" int sz_postprocess_masks_cpu(const float* logits, int n, int lh, int lw, int out_h,
                                        int out_w, uint32_t* bits, uint8_t* bytes,
                                        uint32_t* stats, int n_threads) {
  using namespace sz;
  const int rc = check_postprocess(logits, n, lh, lw, out_h, out_w);
  if (rc != SZ_OK) return rc;
  std::vector<int> x0(out_w), x1(out_w);
  std::vector<float> wx0(out_w), wx1(out_w);
  for (int x = 0; x < out_w; ++x) linear_src(x, lw, out_w, &x0[x], &x1[x], &wx0[x], &wx1[x]);
  const int wpr = words_per_row(out_w);
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
      uint32_t* brow = bits ? bits + static_cast<int64_t>(y) * wpr : nullptr;
      uint8_t* yrow = bytes ? bytes + static_cast<int64_t>(y) * out_w : nullptr;
      uint32_t word = 0;
      int row_first = -1, row_last = -1;
      uint64_t row_area = 0;
      for (int x = 0; x < out_w; ++x) {
        const bool on =
            mask_pixel(logits, n, lh, lw, ya, yb, hy0, hy1, x0[x], x1[x], wx0[x], wx1[x]);
        if (on) {
          word |= 1u << (x & 31);
          if (row_first < 0) row_first = x;
          row_last = x;
          ++row_area;
        }
        if (yrow) yrow[x] = on ? 1 : 0;
        if ((x & 31) == 31 || x == out_w - 1) {
          if (brow) brow[x >> 5] = word;
          word = 0;
        }
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
