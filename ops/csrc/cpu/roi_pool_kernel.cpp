// CPU kernels of roi_pool: max over the integer cells of each bin, on every
// core. The forward runs over boxes, vectorized across channels; the backward
// over channels, so that no two threads ever write the same gradient plane.
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "../entry.h"
#include "../roi_sorted.h"
#include "loops.h"

namespace roi_ops {
namespace {

// Cell ranges of every bin of every box, computed once per call: box k's
// bin p spans rows [h0[k * PH + p], h1[...]) and columns [w0[k * PW + p], w1[...]).
struct PoolBins {
  std::vector<int64_t> batch;
  std::vector<int> h0, h1, w0, w1;

  template <typename T>
  PoolBins(const RoiShape& s, T spatial_scale, const T* rois)
      : batch(s.num_rois),
        h0(s.num_rois * s.pooled_h),
        h1(s.num_rois * s.pooled_h),
        w0(s.num_rois * s.pooled_w),
        w1(s.num_rois * s.pooled_w) {
    for (int64_t k = 0; k < s.num_rois; ++k) {
      const PoolBox<T> b = make_pool_box(rois + k * 5, spatial_scale, s.pooled_h, s.pooled_w);
      batch[k] = b.batch;
      for (int64_t p = 0; p < s.pooled_h; ++p) {
        const int64_t i = k * s.pooled_h + p;
        pool_bin_range(b.start_h, b.bin_h, (int)p, s.height, &h0[i], &h1[i]);
      }
      for (int64_t p = 0; p < s.pooled_w; ++p) {
        const int64_t i = k * s.pooled_w + p;
        pool_bin_range(b.start_w, b.bin_w, (int)p, s.width, &w0[i], &w1[i]);
      }
    }
  }
};

struct CpuPool {
  // The forward reads NHWC so that its inner loop runs over contiguous
  // channels (SIMD), while the argmax it records stays an NCHW plane index.
  static constexpr auto kInputLayout = at::MemoryFormat::ChannelsLast;

  template <typename scalar_t, typename T>
  static void forward(
      const RoiShape& s,
      T spatial_scale,
      const scalar_t* input,
      const T* rois,
      scalar_t* output,
      int* argmax) {
    const PoolBins bins(s, spatial_scale, rois);
    const int64_t C = s.channels;
    const int64_t bins_per_box = s.pooled_h * s.pooled_w;
    at::parallel_for(0, s.num_rois, 1, [&](int64_t k_begin, int64_t k_end) {
      std::vector<scalar_t> best(C);
      std::vector<int> best_index(C);
      for (int64_t k = k_begin; k < k_end; ++k) {
        const scalar_t* image = input + bins.batch[k] * s.height * s.width * C;
        scalar_t* out = output + k * C * bins_per_box;
        int* arg = argmax + k * C * bins_per_box;
        for (int64_t ph = 0; ph < s.pooled_h; ++ph) {
          const int h0 = bins.h0[k * s.pooled_h + ph], h1 = bins.h1[k * s.pooled_h + ph];
          for (int64_t pw = 0; pw < s.pooled_w; ++pw) {
            const int w0 = bins.w0[k * s.pooled_w + pw], w1 = bins.w1[k * s.pooled_w + pw];
            const int64_t bin = ph * s.pooled_w + pw;
            if (h1 <= h0 || w1 <= w0) {
              // A bin wholly outside the map gives 0 and no gradient.
              for (int64_t c = 0; c < C; ++c) {
                out[c * bins_per_box + bin] = scalar_t(0);
                arg[c * bins_per_box + bin] = -1;
              }
              continue;
            }
            // Cells in row-major order; the first of equal maxima wins.
            const int first = static_cast<int>(h0 * s.width + w0);
            std::copy(image + first * C, image + (first + 1) * C, best.begin());
            std::fill(best_index.begin(), best_index.end(), first);
            for (int h = h0; h < h1; ++h) {
              for (int w = w0; w < w1; ++w) {
                const int cell = static_cast<int>(h * s.width + w);
                max_into(image + cell * C, cell, best.data(), best_index.data(), C);
              }
            }
            for (int64_t c = 0; c < C; ++c) {
              out[c * bins_per_box + bin] = best[c];
              arg[c * bins_per_box + bin] = best_index[c];
            }
          }
        }
      }
    });
  }

  template <typename scalar_t, typename T>
  static void backward(
      const RoiShape& s,
      T spatial_scale,
      const scalar_t* grad,
      const T* rois,
      const int* argmax,
      bool deterministic,
      T* grad_input) {
    if (deterministic) {
      // The sorted backward that the CUDA backend runs under deterministic
      // mode, run here so that its arithmetic is tested without a GPU.
      sorted_pool_backward<CpuExec>(s, grad, rois, argmax, grad_input);
      return;
    }
    // Parallel over channels: no two threads write the same gradient plane.
    const int64_t bins = s.pooled_h * s.pooled_w;
    at::parallel_for(0, s.channels, 1, [&](int64_t c_begin, int64_t c_end) {
      for (int64_t k = 0; k < s.num_rois; ++k) {
        const int64_t n = static_cast<int64_t>(rois[k * 5]);
        for (int64_t c = c_begin; c < c_end; ++c) {
          T* grad_plane = grad_input + (n * s.channels + c) * s.height * s.width;
          const int64_t offset = (k * s.channels + c) * bins;
          for (int64_t j = 0; j < bins; ++j) {
            const int cell = argmax[offset + j];
            if (cell >= 0) {
              grad_plane[cell] += static_cast<T>(grad[offset + j]);
            }
          }
        }
      }
    });
  }
};

} // namespace

TORCH_LIBRARY_IMPL(roi_ops, CPU, m) {
  register_pool<CpuPool>(m);
}

} // namespace roi_ops
