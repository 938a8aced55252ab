// CPU kernels of roi_pool: max over the integer cells of each bin, on every
// core. The forward runs over (channel, box) items; the backward over
// channels, so that no two threads ever write the same gradient plane.
#include <ATen/Parallel.h>

#include <vector>

#include "../entry.h"
#include "../roi_gather.h"
#include "parallel.h"

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
  template <typename scalar_t, typename T>
  static void forward(
      const RoiShape& s,
      T spatial_scale,
      const scalar_t* input,
      const T* rois,
      scalar_t* output,
      int* argmax) {
    const PoolBins bins(s, spatial_scale, rois);
    parallel_over_channels_and_boxes(s.channels, s.num_rois, [&](int64_t c, int64_t k) {
      const scalar_t* plane = input + (bins.batch[k] * s.channels + c) * s.height * s.width;
      const int64_t out_offset = (k * s.channels + c) * s.pooled_h * s.pooled_w;
      for (int64_t ph = 0; ph < s.pooled_h; ++ph) {
        const int h0 = bins.h0[k * s.pooled_h + ph], h1 = bins.h1[k * s.pooled_h + ph];
        for (int64_t pw = 0; pw < s.pooled_w; ++pw) {
          const int w0 = bins.w0[k * s.pooled_w + pw], w1 = bins.w1[k * s.pooled_w + pw];
          // An empty bin (wholly outside the map) gives 0 and no gradient.
          T best = T(0);
          int best_index = -1;
          if (h1 > h0 && w1 > w0) {
            best_index = static_cast<int>(h0 * s.width + w0);
            best = static_cast<T>(plane[best_index]);
            for (int h = h0; h < h1; ++h) {
              const scalar_t* row = plane + h * s.width;
              for (int w = w0; w < w1; ++w) {
                const T v = static_cast<T>(row[w]);
                if (v > best) {
                  best = v;
                  best_index = static_cast<int>(h * s.width + w);
                }
              }
            }
          }
          output[out_offset + ph * s.pooled_w + pw] = static_cast<scalar_t>(best);
          argmax[out_offset + ph * s.pooled_w + pw] = best_index;
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
      // The gather that the CUDA backend uses under deterministic mode, run
      // here so that its arithmetic is tested without a GPU.
      std::vector<PoolBox<T>> boxes(s.num_rois);
      for (int64_t k = 0; k < s.num_rois; ++k) {
        boxes[k] = make_pool_box(rois + k * 5, spatial_scale, s.pooled_h, s.pooled_w);
      }
      parallel_over_cells(grad_input, s, [&](const Index4& cell) {
        return pool_grad_at_cell(grad, argmax, boxes.data(), s, cell);
      });
      return;
    }
    // Parallel over channels: no two threads write the same gradient plane.
    const int64_t bins = s.pooled_h * s.pooled_w;
    at::parallel_for(0, s.channels, 1, [&](int64_t c_begin, int64_t c_end) {
      for (int64_t c = c_begin; c < c_end; ++c) {
        for (int64_t k = 0; k < s.num_rois; ++k) {
          const int64_t n = static_cast<int64_t>(rois[k * 5]);
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
