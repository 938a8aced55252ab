// CPU kernels of the bilinear operators, roi_align and roi_warp: forward and
// backward, average and max mode, on every core. The forward runs over boxes,
// vectorized across channels; the backward over channels, so that no two
// threads ever write the same gradient plane.
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "../entry.h"
#include "../roi_gather.h"
#include "parallel.h"

namespace roi_ops {
namespace {

// Every box on the feature grid with the samples of its bins along each axis
// (entry p * grid + i of a box's run is sample i of bin p). Computed once per
// call and shared by all threads, so that the kernels can walk channels in
// the outer loop and keep one feature plane in cache while they visit every
// box that reads it.
template <typename T>
struct SampledBoxes {
  std::vector<BilinearBox<T>> boxes;
  std::vector<int64_t> y_begin, x_begin;
  std::vector<AxisSample<T>> ys, xs;

  SampledBoxes(const RoiShape& s, const BilinearParams<T>& p, const T* rois)
      : boxes(s.num_rois), y_begin(s.num_rois), x_begin(s.num_rois) {
    for (int64_t k = 0; k < s.num_rois; ++k) {
      const BilinearBox<T> b = make_bilinear_box(
          rois + k * 5, p.spatial_scale, s.pooled_h, s.pooled_w, p.sampling_ratio,
          p.box_mode);
      boxes[k] = b;
      y_begin[k] = static_cast<int64_t>(ys.size());
      x_begin[k] = static_cast<int64_t>(xs.size());
      append(ys, b.start_h, b.bin_h, s.pooled_h, b.grid_h, s.height);
      append(xs, b.start_w, b.bin_w, s.pooled_w, b.grid_w, s.width);
    }
  }

  const AxisSample<T>* y_samples(int64_t k) const {
    return ys.data() + y_begin[k];
  }
  const AxisSample<T>* x_samples(int64_t k) const {
    return xs.data() + x_begin[k];
  }

 private:
  static void append(
      std::vector<AxisSample<T>>& out,
      T start,
      T bin,
      int64_t pooled,
      int grid,
      int64_t size) {
    for (int64_t p = 0; p < pooled; ++p) {
      for (int i = 0; i < grid; ++i) {
        out.push_back(axis_sample(sample_coord(start, bin, (int)p, i, grid), size));
      }
    }
  }
};

// Adds g, split bilinearly, to the four cells a sample reads.
template <typename T>
inline void scatter_sample(
    T* plane,
    int64_t width,
    const AxisSample<T>& ay,
    const AxisSample<T>& ax,
    T g) {
  if (!(ay.valid && ax.valid)) {
    return;
  }
  T* lo = plane + ay.low * width;
  T* hi = plane + ay.high * width;
  lo[ax.low] += g * ay.w_low * ax.w_low;
  lo[ax.high] += g * ay.w_low * ax.w_high;
  hi[ax.low] += g * ay.w_high * ax.w_low;
  hi[ax.high] += g * ay.w_high * ax.w_high;
}

// Folds one sample into acc[c] for every channel of an NHWC image: adds it
// (avg) or keeps the larger (max; the first sample initialises). The
// arithmetic per channel is bilinear_value's, in the same order.
template <typename scalar_t, typename T>
inline void accumulate_sample(
    const scalar_t* image,
    int64_t width,
    int64_t channels,
    const AxisSample<T>& ay,
    const AxisSample<T>& ax,
    bool max_mode,
    bool first,
    T* acc) {
  if (!(ay.valid && ax.valid)) {
    if (max_mode) {  // an invalid sample reads 0
      for (int64_t c = 0; c < channels; ++c) {
        acc[c] = (first || T(0) > acc[c]) ? T(0) : acc[c];
      }
    }
    return;
  }
  const T w1 = ay.w_low * ax.w_low, w2 = ay.w_low * ax.w_high;
  const T w3 = ay.w_high * ax.w_low, w4 = ay.w_high * ax.w_high;
  const scalar_t* p1 = image + (ay.low * width + ax.low) * channels;
  const scalar_t* p2 = image + (ay.low * width + ax.high) * channels;
  const scalar_t* p3 = image + (ay.high * width + ax.low) * channels;
  const scalar_t* p4 = image + (ay.high * width + ax.high) * channels;
  if (!max_mode) {
    for (int64_t c = 0; c < channels; ++c) {
      acc[c] += w1 * static_cast<T>(p1[c]) + w2 * static_cast<T>(p2[c]) +
          w3 * static_cast<T>(p3[c]) + w4 * static_cast<T>(p4[c]);
    }
  } else {
    for (int64_t c = 0; c < channels; ++c) {
      const T v = w1 * static_cast<T>(p1[c]) + w2 * static_cast<T>(p2[c]) +
          w3 * static_cast<T>(p3[c]) + w4 * static_cast<T>(p4[c]);
      acc[c] = (first || v > acc[c]) ? v : acc[c];
    }
  }
}

struct CpuBilinear {
  // The forward reads NHWC so that its inner loop runs over contiguous
  // channels (SIMD): one sample's four cells and weights serve every channel.
  static constexpr auto kForwardLayout = at::MemoryFormat::ChannelsLast;

  template <typename scalar_t, typename T>
  static void forward(
      const RoiShape& s,
      const BilinearParams<T>& p,
      const scalar_t* input,
      const T* rois,
      scalar_t* output) {
    const SampledBoxes<T> sampled(s, p, rois);
    const int64_t C = s.channels;
    const int64_t bins_per_box = s.pooled_h * s.pooled_w;
    at::parallel_for(0, s.num_rois, 1, [&](int64_t k_begin, int64_t k_end) {
      std::vector<T> acc(C);
      for (int64_t k = k_begin; k < k_end; ++k) {
        const BilinearBox<T>& b = sampled.boxes[k];
        const AxisSample<T>* ys = sampled.y_samples(k);
        const AxisSample<T>* xs = sampled.x_samples(k);
        const scalar_t* image = input + b.batch * s.height * s.width * C;
        scalar_t* out = output + k * C * bins_per_box;
        for (int64_t ph = 0; ph < s.pooled_h; ++ph) {
          for (int64_t pw = 0; pw < s.pooled_w; ++pw) {
            std::fill(acc.begin(), acc.end(), T(0));
            bool first = true;
            for (int iy = 0; iy < b.grid_h; ++iy) {
              const AxisSample<T>& ay = ys[ph * b.grid_h + iy];
              for (int ix = 0; ix < b.grid_w; ++ix) {
                accumulate_sample(
                    image, s.width, C, ay, xs[pw * b.grid_w + ix], p.max_mode, first,
                    acc.data());
                first = false;
              }
            }
            const int64_t bin = ph * s.pooled_w + pw;
            for (int64_t c = 0; c < C; ++c) {
              out[c * bins_per_box + bin] =
                  static_cast<scalar_t>(p.max_mode ? acc[c] : acc[c] / b.count);
            }
          }
        }
      }
    });
  }

  template <typename scalar_t, typename T>
  static void backward(
      const RoiShape& s,
      const BilinearParams<T>& p,
      const scalar_t* grad,
      const T* rois,
      const scalar_t* input,
      bool deterministic,
      T* grad_input) {
    if (deterministic) {
      // The gather that the CUDA backend uses under deterministic mode, run
      // here so that its arithmetic is tested without a GPU.
      const SampledBoxes<T> sampled(s, p, rois);
      parallel_over_cells(grad_input, s, [&](const Index4& cell) {
        return bilinear_grad_at_cell(
            grad, input, sampled.boxes.data(), s, cell, p.max_mode);
      });
      return;
    }
    scatter_backward(s, p, grad, rois, input, grad_input);
  }

 private:
  // Parallel over channels: no two threads write the same gradient plane.
  template <typename scalar_t, typename T>
  static void scatter_backward(
      const RoiShape& s,
      const BilinearParams<T>& p,
      const scalar_t* grad,
      const T* rois,
      const scalar_t* input,
      T* grad_input) {
    const SampledBoxes<T> sampled(s, p, rois);
    const int64_t plane_size = s.height * s.width;
    at::parallel_for(0, s.channels, 1, [&](int64_t c_begin, int64_t c_end) {
      for (int64_t c = c_begin; c < c_end; ++c) {
        for (int64_t k = 0; k < s.num_rois; ++k) {
          const BilinearBox<T>& b = sampled.boxes[k];
          const AxisSample<T>* ys = sampled.y_samples(k);
          const AxisSample<T>* xs = sampled.x_samples(k);
          const int64_t plane_offset = (b.batch * s.channels + c) * plane_size;
          T* grad_plane = grad_input + plane_offset;
          const scalar_t* g = grad + (k * s.channels + c) * s.pooled_h * s.pooled_w;
          for (int64_t ph = 0; ph < s.pooled_h; ++ph) {
            for (int64_t pw = 0; pw < s.pooled_w; ++pw) {
              const T g_bin = static_cast<T>(g[ph * s.pooled_w + pw]);
              if (p.max_mode) {
                const int win = max_sample_index(
                    b, input + plane_offset, s.height, s.width, (int)ph, (int)pw);
                if (win >= 0) {
                  scatter_sample(
                      grad_plane, s.width, ys[ph * b.grid_h + win / b.grid_w],
                      xs[pw * b.grid_w + win % b.grid_w], g_bin);
                }
                continue;
              }
              const T g_sample = g_bin / b.count;
              for (int iy = 0; iy < b.grid_h; ++iy) {
                for (int ix = 0; ix < b.grid_w; ++ix) {
                  scatter_sample(
                      grad_plane, s.width, ys[ph * b.grid_h + iy],
                      xs[pw * b.grid_w + ix], g_sample);
                }
              }
            }
          }
        }
      }
    });
  }
};

} // namespace

TORCH_LIBRARY_IMPL(roi_ops, CPU, m) {
  register_bilinear<CpuBilinear>(m);
}

} // namespace roi_ops
