// CPU kernels of the bilinear operators, roi_align and roi_warp: forward and
// backward, average and max mode, on every core. The forward runs over boxes,
// vectorized across channels; the backward over channels, so that no two
// threads ever write the same gradient plane.
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "../entry.h"
#include "../roi_sorted.h"
#include "loops.h"

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

// Folds one sample into acc[c] for n consecutive channels of an NHWC image
// (image points at the first; channels is the pixel stride): adds it (avg) or
// keeps the larger (max; the first sample initialises). The arithmetic per
// channel is bilinear_value's, in the same order.
template <typename scalar_t, typename T>
inline void accumulate_sample(
    const scalar_t* image,
    int64_t width,
    int64_t channels,
    const AxisSample<T>& ay,
    const AxisSample<T>& ax,
    bool max_mode,
    bool first,
    T* acc,
    int64_t n) {
  if (!(ay.valid && ax.valid)) {
    if (max_mode) {  // an invalid sample reads 0
      for (int64_t c = 0; c < n; ++c) {
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
    for (int64_t c = 0; c < n; ++c) {
      acc[c] += w1 * static_cast<T>(p1[c]) + w2 * static_cast<T>(p2[c]) +
          w3 * static_cast<T>(p3[c]) + w4 * static_cast<T>(p4[c]);
    }
  } else {
    for (int64_t c = 0; c < n; ++c) {
      const T v = w1 * static_cast<T>(p1[c]) + w2 * static_cast<T>(p2[c]) +
          w3 * static_cast<T>(p3[c]) + w4 * static_cast<T>(p4[c]);
      acc[c] = (first || v > acc[c]) ? v : acc[c];
    }
  }
}

struct CpuBilinear {
  // The forward reads NHWC so that its inner loop runs over contiguous
  // channels (SIMD): one sample's four cells and weights serve every channel.
  static constexpr auto kInputLayout = at::MemoryFormat::ChannelsLast;

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
                    acc.data(), C);
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
      // The sorted backward that the CUDA backend runs under deterministic
      // mode, run here so that its arithmetic is tested without a GPU. It
      // reads NCHW.
      at::Tensor input_nchw;
      if (p.max_mode) {
        input_nchw = at::from_blob(
                         const_cast<scalar_t*>(input), {s.batch, s.height, s.width, s.channels},
                         c10::CppTypeToScalarType<scalar_t>::value)
                         .permute({0, 3, 1, 2})
                         .contiguous();
      }
      sorted_bilinear_backward<CpuExec>(
          s, p, grad, rois, p.max_mode ? input_nchw.data_ptr<scalar_t>() : nullptr,
          grad_input);
      return;
    }
    const SampledBoxes<T> sampled(s, p, rois);
    // Accumulate in NHWC, vectorized across a thread's channels, then copy
    // into the NCHW gradient. Threads own disjoint channel ranges.
    at::Tensor acc = at::zeros(
        {s.batch, s.height, s.width, s.channels},
        at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
    scatter_backward(s, p, sampled, grad, input, acc.data_ptr<T>());
    at::from_blob(grad_input, {s.batch, s.channels, s.height, s.width}, acc.options())
        .copy_(acc.permute({0, 3, 1, 2}));
  }

 private:
  template <typename scalar_t, typename T>
  static void scatter_backward(
      const RoiShape& s,
      const BilinearParams<T>& p,
      const SampledBoxes<T>& sampled,
      const scalar_t* grad,
      const scalar_t* input,
      T* acc) {
    const int64_t C = s.channels;
    const int64_t bins_per_box = s.pooled_h * s.pooled_w;
    at::parallel_for(0, C, 16, [&](int64_t c0, int64_t c1) {
      const int64_t n = c1 - c0;
      std::vector<T> g(n), values(n), best(n);
      std::vector<int> winner(n);
      for (int64_t k = 0; k < s.num_rois; ++k) {
        const BilinearBox<T>& b = sampled.boxes[k];
        const AxisSample<T>* ys = sampled.y_samples(k);
        const AxisSample<T>* xs = sampled.x_samples(k);
        const int64_t image_offset = b.batch * s.height * s.width * C;
        T* image_grad = acc + image_offset + c0;
        const scalar_t* g_box = grad + (k * C + c0) * bins_per_box;
        for (int64_t ph = 0; ph < s.pooled_h; ++ph) {
          for (int64_t pw = 0; pw < s.pooled_w; ++pw) {
            const int64_t bin = ph * s.pooled_w + pw;
            for (int64_t j = 0; j < n; ++j) {
              g[j] = static_cast<T>(g_box[j * bins_per_box + bin]);
            }
            const AxisSample<T>* bin_ys = ys + ph * b.grid_h;
            const AxisSample<T>* bin_xs = xs + pw * b.grid_w;
            if (p.max_mode) {
              find_winners(
                  input + image_offset + c0, s.width, C, b, bin_ys, bin_xs, n, values.data(),
                  best.data(), winner.data());
              for (int64_t j = 0; j < n; ++j) {
                if (winner[j] >= 0) {
                  scatter_one(
                      image_grad + j, s.width, C, bin_ys[winner[j] / b.grid_w],
                      bin_xs[winner[j] % b.grid_w], g[j]);
                }
              }
              continue;
            }
            for (int64_t j = 0; j < n; ++j) {
              g[j] /= b.count;
            }
            for (int iy = 0; iy < b.grid_h; ++iy) {
              for (int ix = 0; ix < b.grid_w; ++ix) {
                scatter_channels(image_grad, s.width, C, bin_ys[iy], bin_xs[ix], g.data(), n);
              }
            }
          }
        }
      }
    });
  }

  // For each of n channels, the index (iy * grid_w + ix) of the bin's sample
  // that max mode picks: the first of the largest values, an invalid sample
  // reading 0 (as max_sample_index, across channels). image points at the
  // first of the n channels of an NHWC image.
  template <typename scalar_t, typename T>
  static void find_winners(
      const scalar_t* image,
      int64_t width,
      int64_t channels,
      const BilinearBox<T>& b,
      const AxisSample<T>* ys,
      const AxisSample<T>* xs,
      int64_t n,
      T* values,
      T* best,
      int* winner) {
    std::fill(winner, winner + n, -1);
    for (int iy = 0; iy < b.grid_h; ++iy) {
      for (int ix = 0; ix < b.grid_w; ++ix) {
        std::fill(values, values + n, T(0));
        const bool first = iy == 0 && ix == 0;
        accumulate_sample(image, width, channels, ys[iy], xs[ix], false, first, values, n);
        const int sample = iy * b.grid_w + ix;
        if (first) {
          std::copy(values, values + n, best);
          std::fill(winner, winner + n, sample);
        } else {
          max_into(values, sample, best, winner, n);
        }
      }
    }
  }

  // Adds g[j], split bilinearly, to the four cells one sample reads, for n
  // consecutive channels of an NHWC gradient (image_grad points at the first).
  template <typename T>
  static void scatter_channels(
      T* image_grad,
      int64_t width,
      int64_t channels,
      const AxisSample<T>& ay,
      const AxisSample<T>& ax,
      const T* g,
      int64_t n) {
    if (!(ay.valid && ax.valid)) {
      return;
    }
    const T w1 = ay.w_low * ax.w_low, w2 = ay.w_low * ax.w_high;
    const T w3 = ay.w_high * ax.w_low, w4 = ay.w_high * ax.w_high;
    T* p1 = image_grad + (ay.low * width + ax.low) * channels;
    T* p2 = image_grad + (ay.low * width + ax.high) * channels;
    T* p3 = image_grad + (ay.high * width + ax.low) * channels;
    T* p4 = image_grad + (ay.high * width + ax.high) * channels;
    // p1..p4 may coincide at the border: four separate passes keep every add.
    for (int64_t j = 0; j < n; ++j) p1[j] += g[j] * w1;
    for (int64_t j = 0; j < n; ++j) p2[j] += g[j] * w2;
    for (int64_t j = 0; j < n; ++j) p3[j] += g[j] * w3;
    for (int64_t j = 0; j < n; ++j) p4[j] += g[j] * w4;
  }

  // One channel's share of scatter_channels.
  template <typename T>
  static void scatter_one(
      T* channel_grad,
      int64_t width,
      int64_t channels,
      const AxisSample<T>& ay,
      const AxisSample<T>& ax,
      T g) {
    scatter_channels(channel_grad, width, channels, ay, ax, &g, 1);
  }
};

} // namespace

TORCH_LIBRARY_IMPL(roi_ops, CPU, m) {
  register_bilinear<CpuBilinear>(m);
}

} // namespace roi_ops
