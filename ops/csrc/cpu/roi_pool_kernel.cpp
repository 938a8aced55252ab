// CPU kernels of roi_pool: max over the integer cells of each bin, forward
// parallel over (channel, box) pairs, backward parallel over channels.
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

// Cell ranges of every bin of every box, computed once per call: box k's
// bin p spans rows [h0[k * PH + p], h1[...]) and columns [w0[k * PW + p], w1[...]).
struct PoolBins {
  std::vector<int64_t> batch;
  std::vector<int> h0, h1, w0, w1;

  template <typename T>
  PoolBins(const T* rois, int64_t num_rois, int64_t height, int64_t width,
           int64_t pooled_h, int64_t pooled_w, T spatial_scale)
      : batch(num_rois), h0(num_rois * pooled_h), h1(num_rois * pooled_h),
        w0(num_rois * pooled_w), w1(num_rois * pooled_w) {
    for (int64_t k = 0; k < num_rois; ++k) {
      const PoolBox<T> b = make_pool_box(rois + k * 5, spatial_scale, pooled_h, pooled_w);
      batch[k] = b.batch;
      for (int64_t p = 0; p < pooled_h; ++p) {
        pool_bin_range(b.start_h, b.bin_h, (int)p, height, &h0[k * pooled_h + p],
                       &h1[k * pooled_h + p]);
      }
      for (int64_t p = 0; p < pooled_w; ++p) {
        pool_bin_range(b.start_w, b.bin_w, (int)p, width, &w0[k * pooled_w + p],
                       &w1[k * pooled_w + p]);
      }
    }
  }
};

template <typename scalar_t>
void forward_impl(
    const scalar_t* input,
    const PoolBins& bins,
    int64_t channels,
    int64_t height,
    int64_t width,
    int64_t pooled_h,
    int64_t pooled_w,
    scalar_t* output,
    int* argmax) {
  using T = at::opmath_type<scalar_t>;
  const int64_t num_rois = static_cast<int64_t>(bins.batch.size());
  // Work items are (block of boxes, channel) pairs: a block's boxes read one
  // channel plane while it is in cache, and write few output pages.
  const int64_t blocks = (num_rois + kBoxBlock - 1) / kBoxBlock;
  at::parallel_for(0, blocks * channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t c = item % channels;
      const int64_t k_begin = (item / channels) * kBoxBlock;
      const int64_t k_end = std::min(num_rois, k_begin + kBoxBlock);
      for (int64_t k = k_begin; k < k_end; ++k) {
        const scalar_t* plane = input + (bins.batch[k] * channels + c) * height * width;
        const int64_t out_offset = (k * channels + c) * pooled_h * pooled_w;
        for (int64_t ph = 0; ph < pooled_h; ++ph) {
          const int h0 = bins.h0[k * pooled_h + ph], h1 = bins.h1[k * pooled_h + ph];
          for (int64_t pw = 0; pw < pooled_w; ++pw) {
            const int w0 = bins.w0[k * pooled_w + pw], w1 = bins.w1[k * pooled_w + pw];
            // An empty bin (wholly outside the map) gives 0 and no gradient.
            T best = T(0);
            int best_index = -1;
            if (h1 > h0 && w1 > w0) {
              best_index = static_cast<int>(h0 * width + w0);
              best = static_cast<T>(plane[best_index]);
              for (int h = h0; h < h1; ++h) {
                const scalar_t* row = plane + h * width;
                for (int w = w0; w < w1; ++w) {
                  const T v = static_cast<T>(row[w]);
                  if (v > best) {
                    best = v;
                    best_index = static_cast<int>(h * width + w);
                  }
                }
              }
            }
            output[out_offset + ph * pooled_w + pw] = static_cast<scalar_t>(best);
            argmax[out_offset + ph * pooled_w + pw] = best_index;
          }
        }
      }
    }
  });
}

template <typename scalar_t, typename T>
void backward_impl(
    const scalar_t* grad,
    const T* rois,
    const int* argmax,
    int64_t num_rois,
    int64_t channels,
    int64_t height,
    int64_t width,
    int64_t pooled_h,
    int64_t pooled_w,
    T* grad_input) {
  at::parallel_for(0, channels, 1, [&](int64_t c_begin, int64_t c_end) {
    for (int64_t c = c_begin; c < c_end; ++c) {
      for (int64_t k = 0; k < num_rois; ++k) {
        const int64_t n = static_cast<int64_t>(rois[k * 5]);
        T* grad_plane = grad_input + (n * channels + c) * height * width;
        const int64_t offset = (k * channels + c) * pooled_h * pooled_w;
        for (int64_t j = 0; j < pooled_h * pooled_w; ++j) {
          const int cell = argmax[offset + j];
          if (cell >= 0) {
            grad_plane[cell] += static_cast<T>(grad[offset + j]);
          }
        }
      }
    }
  });
}

// The deterministic gather that the CUDA backend uses; see roi_gather.h.
template <typename scalar_t, typename T>
void backward_gather_impl(
    const scalar_t* grad,
    const T* rois,
    const int* argmax,
    int64_t num_rois,
    int64_t batch_size,
    int64_t channels,
    int64_t height,
    int64_t width,
    int64_t pooled_h,
    int64_t pooled_w,
    T spatial_scale,
    T* grad_input) {
  std::vector<PoolBox<T>> boxes(num_rois);
  for (int64_t k = 0; k < num_rois; ++k) {
    boxes[k] = make_pool_box(rois + k * 5, spatial_scale, pooled_h, pooled_w);
  }
  const int64_t cells = batch_size * channels * height * width;
  at::parallel_for(0, cells, 256, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t col = i % width;
      const int64_t row = (i / width) % height;
      const int64_t c = (i / (width * height)) % channels;
      const int64_t n = i / (width * height * channels);
      grad_input[i] = pool_grad_at_cell(
          grad, argmax, boxes.data(), num_rois, n, c, row, col, channels,
          height, width, pooled_h, pooled_w);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> roi_pool_cpu(
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_h,
    int64_t pooled_w) {
  check_forward_args("roi_pool", input, rois, spatial_scale, pooled_h, pooled_w);
  check_box_values(
      "roi_pool", rois, input.size(0), spatial_scale, pooled_h, pooled_w, /*sampling_ratio=*/1);
  const int64_t num_rois = rois.size(0);
  const int64_t channels = input.size(1);
  at::Tensor output =
      at::empty({num_rois, channels, pooled_h, pooled_w}, input.options());
  at::Tensor argmax = at::empty(
      {num_rois, channels, pooled_h, pooled_w}, input.options().dtype(at::kInt));
  if (output.numel() == 0) {
    return std::make_tuple(output, argmax);
  }
  const at::Tensor input_c = input.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "roi_ops_roi_pool_forward", [&] {
        using T = at::opmath_type<scalar_t>;
        const PoolBins bins(rois_c.data_ptr<T>(), num_rois, input.size(2), input.size(3),
                            pooled_h, pooled_w, static_cast<T>(spatial_scale));
        forward_impl<scalar_t>(
            input_c.data_ptr<scalar_t>(), bins, channels, input.size(2), input.size(3),
            pooled_h, pooled_w, output.data_ptr<scalar_t>(), argmax.data_ptr<int>());
      });
  return std::make_tuple(output, argmax);
}

at::Tensor roi_pool_backward_cpu(
    const at::Tensor& grad,
    const at::Tensor& rois,
    const at::Tensor& argmax,
    double spatial_scale,
    int64_t batch_size,
    int64_t channels,
    int64_t height,
    int64_t width,
    bool deterministic) {
  check_pool_backward_args(grad, rois, argmax, channels);
  const at::ScalarType acc = acc_type_for(grad.scalar_type());
  at::Tensor grad_input =
      at::zeros({batch_size, channels, height, width}, grad.options().dtype(acc));
  if (grad.numel() == 0 || grad_input.numel() == 0) {
    return grad_input.to(grad.scalar_type());
  }
  const at::Tensor grad_c = grad.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  const at::Tensor argmax_c = argmax.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_ops_roi_pool_backward", [&] {
        using T = at::opmath_type<scalar_t>;
        if (deterministic) {
          backward_gather_impl<scalar_t, T>(
              grad_c.data_ptr<scalar_t>(), rois_c.data_ptr<T>(),
              argmax_c.data_ptr<int>(), rois.size(0), batch_size, channels,
              height, width, grad.size(2), grad.size(3),
              static_cast<T>(spatial_scale), grad_input.data_ptr<T>());
        } else {
          backward_impl<scalar_t, T>(
              grad_c.data_ptr<scalar_t>(), rois_c.data_ptr<T>(),
              argmax_c.data_ptr<int>(), rois.size(0), channels, height, width,
              grad.size(2), grad.size(3), grad_input.data_ptr<T>());
        }
      });
  return grad_input.to(grad.scalar_type());
}

} // namespace

TORCH_LIBRARY_IMPL(roi_ops, CPU, m) {
  m.impl("roi_pool", TORCH_FN(roi_pool_cpu));
  m.impl("_roi_pool_backward", TORCH_FN(roi_pool_backward_cpu));
}

} // namespace roi_ops
