// CPU kernels of the bilinear operators, roi_align and roi_warp: forward and
// backward, average and max mode. Work is spread over all cores with
// at::parallel_for: forward over (channel, box) pairs, backward over
// channels, so that no two threads ever write the same gradient cell.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../checks.h"
#include "../roi_gather.h"

namespace roi_ops {
namespace {

constexpr int64_t kBoxBlock = 32;

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

  SampledBoxes(
      const T* rois,
      int64_t num_rois,
      int64_t height,
      int64_t width,
      int64_t pooled_h,
      int64_t pooled_w,
      T spatial_scale,
      int64_t sampling_ratio,
      int64_t box_mode)
      : boxes(num_rois), y_begin(num_rois), x_begin(num_rois) {
    for (int64_t k = 0; k < num_rois; ++k) {
      const BilinearBox<T> b = make_bilinear_box(
          rois + k * 5, spatial_scale, pooled_h, pooled_w, sampling_ratio, box_mode);
      boxes[k] = b;
      y_begin[k] = static_cast<int64_t>(ys.size());
      x_begin[k] = static_cast<int64_t>(xs.size());
      append(ys, b.start_h, b.bin_h, pooled_h, b.grid_h, height);
      append(xs, b.start_w, b.bin_w, pooled_w, b.grid_w, width);
    }
  }

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

template <typename scalar_t, typename T>
void forward_impl(
    const scalar_t* input,
    const SampledBoxes<T>& sampled,
    int64_t channels,
    int64_t height,
    int64_t width,
    int64_t pooled_h,
    int64_t pooled_w,
    bool max_mode,
    scalar_t* output) {
  const int64_t num_rois = static_cast<int64_t>(sampled.boxes.size());
  // Work items are (block of boxes, channel) pairs: a block's boxes read one
  // channel plane while it is in cache, and write few output pages.
  const int64_t blocks = (num_rois + kBoxBlock - 1) / kBoxBlock;
  at::parallel_for(0, blocks * channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t c = item % channels;
      const int64_t k_begin = (item / channels) * kBoxBlock;
      const int64_t k_end = std::min(num_rois, k_begin + kBoxBlock);
      for (int64_t k = k_begin; k < k_end; ++k) {
        const BilinearBox<T>& b = sampled.boxes[k];
        const AxisSample<T>* ys = sampled.ys.data() + sampled.y_begin[k];
        const AxisSample<T>* xs = sampled.xs.data() + sampled.x_begin[k];
        const scalar_t* plane = input + (b.batch * channels + c) * height * width;
        scalar_t* out = output + (k * channels + c) * pooled_h * pooled_w;
        for (int64_t ph = 0; ph < pooled_h; ++ph) {
          for (int64_t pw = 0; pw < pooled_w; ++pw) {
            T acc = T(0);
            bool first = true;
            for (int iy = 0; iy < b.grid_h; ++iy) {
              const AxisSample<T>& ay = ys[ph * b.grid_h + iy];
              for (int ix = 0; ix < b.grid_w; ++ix) {
                const T v = bilinear_value(plane, width, ay, xs[pw * b.grid_w + ix]);
                if (!max_mode) {
                  acc += v;
                } else if (first || v > acc) {
                  acc = v;
                }
                first = false;
              }
            }
            out[ph * pooled_w + pw] =
                static_cast<scalar_t>(max_mode ? acc : acc / b.count);
          }
        }
      }
    }
  });
}

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

// Parallel over channels: no two threads write the same gradient plane.
template <typename scalar_t, typename T>
void backward_impl(
    const scalar_t* grad,
    const SampledBoxes<T>& sampled,
    const scalar_t* input,
    int64_t channels,
    int64_t height,
    int64_t width,
    int64_t pooled_h,
    int64_t pooled_w,
    bool max_mode,
    T* grad_input) {
  const int64_t num_rois = static_cast<int64_t>(sampled.boxes.size());
  at::parallel_for(0, channels, 1, [&](int64_t c_begin, int64_t c_end) {
    for (int64_t c = c_begin; c < c_end; ++c) {
      for (int64_t k = 0; k < num_rois; ++k) {
        const BilinearBox<T>& b = sampled.boxes[k];
        const AxisSample<T>* ys = sampled.ys.data() + sampled.y_begin[k];
        const AxisSample<T>* xs = sampled.xs.data() + sampled.x_begin[k];
        const int64_t plane_offset = (b.batch * channels + c) * height * width;
        T* grad_plane = grad_input + plane_offset;
        const scalar_t* g = grad + (k * channels + c) * pooled_h * pooled_w;
        for (int64_t ph = 0; ph < pooled_h; ++ph) {
          for (int64_t pw = 0; pw < pooled_w; ++pw) {
            const T g_bin = static_cast<T>(g[ph * pooled_w + pw]);
            if (max_mode) {
              const int s = max_sample_index(
                  b, input + plane_offset, height, width, (int)ph, (int)pw);
              if (s >= 0) {
                scatter_sample(
                    grad_plane,
                    width,
                    ys[ph * b.grid_h + s / b.grid_w],
                    xs[pw * b.grid_w + s % b.grid_w],
                    g_bin);
              }
              continue;
            }
            const T g_sample = g_bin / b.count;
            for (int iy = 0; iy < b.grid_h; ++iy) {
              for (int ix = 0; ix < b.grid_w; ++ix) {
                scatter_sample(
                    grad_plane,
                    width,
                    ys[ph * b.grid_h + iy],
                    xs[pw * b.grid_w + ix],
                    g_sample);
              }
            }
          }
        }
      }
    }
  });
}

// The deterministic gather of roi_gather.h, which the CUDA backend uses;
// available on CPU so that its arithmetic is tested without a GPU.
template <typename scalar_t, typename T>
void backward_gather_impl(
    const scalar_t* grad,
    const T* rois,
    const scalar_t* input,
    int64_t num_rois,
    int64_t batch_size,
    int64_t channels,
    int64_t height,
    int64_t width,
    int64_t pooled_h,
    int64_t pooled_w,
    T spatial_scale,
    int64_t sampling_ratio,
    int64_t box_mode,
    bool max_mode,
    T* grad_input) {
  std::vector<BilinearBox<T>> boxes(num_rois);
  for (int64_t k = 0; k < num_rois; ++k) {
    boxes[k] = make_bilinear_box(
        rois + k * 5, spatial_scale, pooled_h, pooled_w, sampling_ratio, box_mode);
  }
  const int64_t cells = batch_size * channels * height * width;
  at::parallel_for(0, cells, 256, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t col = i % width;
      const int64_t row = (i / width) % height;
      const int64_t c = (i / (width * height)) % channels;
      const int64_t n = i / (width * height * channels);
      grad_input[i] = bilinear_grad_at_cell(
          grad, input, boxes.data(), num_rois, n, c, row, col, channels,
          height, width, pooled_h, pooled_w, max_mode);
    }
  });
}

at::Tensor bilinear_forward(
    const char* op,
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_h,
    int64_t pooled_w,
    int64_t sampling_ratio,
    int64_t box_mode,
    bool max_mode) {
  check_forward_args(op, input, rois, spatial_scale, pooled_h, pooled_w);
  check_box_values(
      op, rois, input.size(0), spatial_scale, pooled_h, pooled_w, sampling_ratio);
  const int64_t num_rois = rois.size(0);
  const int64_t channels = input.size(1);
  at::Tensor output =
      at::empty({num_rois, channels, pooled_h, pooled_w}, input.options());
  if (output.numel() == 0) {
    return output;
  }
  const at::Tensor input_c = input.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "roi_ops_bilinear_forward", [&] {
        using T = at::opmath_type<scalar_t>;
        const SampledBoxes<T> sampled(
            rois_c.data_ptr<T>(), num_rois, input.size(2), input.size(3), pooled_h,
            pooled_w, static_cast<T>(spatial_scale), sampling_ratio, box_mode);
        forward_impl<scalar_t, T>(
            input_c.data_ptr<scalar_t>(), sampled, channels, input.size(2),
            input.size(3), pooled_h, pooled_w, max_mode, output.data_ptr<scalar_t>());
      });
  return output;
}

at::Tensor roi_align_cpu(
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_h,
    int64_t pooled_w,
    int64_t sampling_ratio,
    bool aligned,
    bool max_mode) {
  return bilinear_forward(
      "roi_align", input, rois, spatial_scale, pooled_h, pooled_w,
      sampling_ratio, aligned ? kAlignHalfPixel : kAlignLegacy, max_mode);
}

at::Tensor roi_warp_cpu(
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_h,
    int64_t pooled_w,
    int64_t sampling_ratio,
    bool max_mode) {
  return bilinear_forward(
      "roi_warp", input, rois, spatial_scale, pooled_h, pooled_w,
      sampling_ratio, kWarp, max_mode);
}

at::Tensor bilinear_backward_cpu(
    const at::Tensor& grad,
    const at::Tensor& rois,
    const std::optional<at::Tensor>& input,
    double spatial_scale,
    int64_t batch_size,
    int64_t channels,
    int64_t height,
    int64_t width,
    int64_t sampling_ratio,
    int64_t box_mode,
    bool max_mode,
    bool deterministic) {
  check_bilinear_backward_args(grad, rois, input, channels, max_mode);
  const at::ScalarType acc = acc_type_for(grad.scalar_type());
  at::Tensor grad_input =
      at::zeros({batch_size, channels, height, width}, grad.options().dtype(acc));
  if (grad.numel() == 0 || grad_input.numel() == 0) {
    return grad_input.to(grad.scalar_type());
  }
  const at::Tensor grad_c = grad.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  const at::Tensor input_c = max_mode ? input->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_ops_bilinear_backward", [&] {
        using T = at::opmath_type<scalar_t>;
        const scalar_t* in = max_mode ? input_c.data_ptr<scalar_t>() : nullptr;
        if (deterministic) {
          backward_gather_impl<scalar_t, T>(
              grad_c.data_ptr<scalar_t>(), rois_c.data_ptr<T>(), in,
              rois.size(0), batch_size, channels, height, width,
              grad.size(2), grad.size(3), static_cast<T>(spatial_scale),
              sampling_ratio, box_mode, max_mode, grad_input.data_ptr<T>());
        } else {
          const SampledBoxes<T> sampled(
              rois_c.data_ptr<T>(), rois.size(0), height, width, grad.size(2),
              grad.size(3), static_cast<T>(spatial_scale), sampling_ratio, box_mode);
          backward_impl<scalar_t, T>(
              grad_c.data_ptr<scalar_t>(), sampled, in, channels, height, width,
              grad.size(2), grad.size(3), max_mode, grad_input.data_ptr<T>());
        }
      });
  return grad_input.to(grad.scalar_type());
}

} // namespace

TORCH_LIBRARY_IMPL(roi_ops, CPU, m) {
  m.impl("roi_align", TORCH_FN(roi_align_cpu));
  m.impl("roi_warp", TORCH_FN(roi_warp_cpu));
  m.impl("_bilinear_backward", TORCH_FN(bilinear_backward_cpu));
}

} // namespace roi_ops
