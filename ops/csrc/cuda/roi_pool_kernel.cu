// CUDA kernels of roi_pool: forward with argmax, backward with atomics
// (default) or a deterministic gather (under
// torch.use_deterministic_algorithms(True)). Runs on the current stream.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../checks.h"
#include "../roi_gather.h"
#include "launch.cuh"

namespace roi_ops {
namespace {

template <typename scalar_t, typename T>
__global__ void forward_kernel(
    int64_t total,
    const scalar_t* __restrict__ input,
    const T* __restrict__ rois,
    int64_t channels,
    int64_t height,
    int64_t width,
    int64_t pooled_h,
    int64_t pooled_w,
    T spatial_scale,
    scalar_t* __restrict__ output,
    int* __restrict__ argmax) {
  ROI_OPS_GRID_STRIDE_LOOP(index, total) {
    const int pw = static_cast<int>(index % pooled_w);
    const int ph = static_cast<int>((index / pooled_w) % pooled_h);
    const int64_t c = (index / pooled_w / pooled_h) % channels;
    const int64_t k = index / pooled_w / pooled_h / channels;
    const PoolBox<T> b = make_pool_box(rois + k * 5, spatial_scale, pooled_h, pooled_w);
    int h0, h1, w0, w1;
    pool_bin_range(b.start_h, b.bin_h, ph, height, &h0, &h1);
    pool_bin_range(b.start_w, b.bin_w, pw, width, &w0, &w1);
    const scalar_t* plane = input + (b.batch * channels + c) * height * width;
    T best = T(0);
    int best_index = -1;
    for (int h = h0; h < h1; ++h) {
      for (int w = w0; w < w1; ++w) {
        const T v = static_cast<T>(plane[h * width + w]);
        if (best_index < 0 || v > best) {
          best = v;
          best_index = static_cast<int>(h * width + w);
        }
      }
    }
    output[index] = static_cast<scalar_t>(best);
    argmax[index] = best_index;
  }
}

template <typename scalar_t, typename T>
__global__ void backward_atomic_kernel(
    int64_t total,
    const scalar_t* __restrict__ grad,
    const T* __restrict__ rois,
    const int* __restrict__ argmax,
    int64_t channels,
    int64_t height,
    int64_t width,
    int64_t pooled_h,
    int64_t pooled_w,
    T* __restrict__ grad_input) {
  ROI_OPS_GRID_STRIDE_LOOP(index, total) {
    const int cell = argmax[index];
    if (cell < 0) {
      continue;
    }
    const int64_t c = (index / pooled_w / pooled_h) % channels;
    const int64_t k = index / pooled_w / pooled_h / channels;
    const int64_t n = static_cast<int64_t>(rois[k * 5]);
    gpuAtomicAdd(
        grad_input + (n * channels + c) * height * width + cell,
        static_cast<T>(grad[index]));
  }
}

template <typename T>
__global__ void boxes_kernel(
    int64_t num_rois,
    const T* __restrict__ rois,
    T spatial_scale,
    int64_t pooled_h,
    int64_t pooled_w,
    PoolBox<T>* __restrict__ boxes) {
  ROI_OPS_GRID_STRIDE_LOOP(k, num_rois) {
    boxes[k] = make_pool_box(rois + k * 5, spatial_scale, pooled_h, pooled_w);
  }
}

template <typename scalar_t, typename T>
__global__ void backward_gather_kernel(
    int64_t total,
    const scalar_t* __restrict__ grad,
    const int* __restrict__ argmax,
    const PoolBox<T>* __restrict__ boxes,
    int64_t num_rois,
    int64_t channels,
    int64_t height,
    int64_t width,
    int64_t pooled_h,
    int64_t pooled_w,
    T* __restrict__ grad_input) {
  ROI_OPS_GRID_STRIDE_LOOP(index, total) {
    const int64_t col = index % width;
    const int64_t row = (index / width) % height;
    const int64_t c = (index / width / height) % channels;
    const int64_t n = index / width / height / channels;
    grad_input[index] = pool_grad_at_cell(
        grad, argmax, boxes, num_rois, n, c, row, col, channels, height, width,
        pooled_h, pooled_w);
  }
}

std::tuple<at::Tensor, at::Tensor> roi_pool_cuda(
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_h,
    int64_t pooled_w) {
  check_forward_args("roi_pool", input, rois, spatial_scale, pooled_h, pooled_w);
  at::cuda::CUDAGuard guard(input.device());
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
  const int64_t total = output.numel();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "roi_ops_roi_pool_forward_cuda", [&] {
        using T = at::opmath_type<scalar_t>;
        forward_kernel<scalar_t, T><<<blocks_for(total), kThreads, 0, stream>>>(
            total, input_c.data_ptr<scalar_t>(), rois_c.data_ptr<T>(), channels,
            input.size(2), input.size(3), pooled_h, pooled_w,
            static_cast<T>(spatial_scale), output.data_ptr<scalar_t>(),
            argmax.data_ptr<int>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return std::make_tuple(output, argmax);
}

at::Tensor roi_pool_backward_cuda(
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
  at::cuda::CUDAGuard guard(grad.device());
  const at::ScalarType acc = acc_type_for(grad.scalar_type());
  at::Tensor grad_input =
      at::zeros({batch_size, channels, height, width}, grad.options().dtype(acc));
  if (grad.numel() == 0 || grad_input.numel() == 0) {
    return grad_input.to(grad.scalar_type());
  }
  const at::Tensor grad_c = grad.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  const at::Tensor argmax_c = argmax.contiguous();
  const int64_t num_rois = rois.size(0);
  const int64_t pooled_h = grad.size(2);
  const int64_t pooled_w = grad.size(3);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_ops_roi_pool_backward_cuda", [&] {
        using T = at::opmath_type<scalar_t>;
        if (deterministic) {
          at::Tensor boxes = at::empty(
              {num_rois * static_cast<int64_t>(sizeof(PoolBox<T>))},
              grad.options().dtype(at::kByte));
          auto* boxes_ptr = reinterpret_cast<PoolBox<T>*>(boxes.data_ptr<uint8_t>());
          boxes_kernel<T><<<blocks_for(num_rois), kThreads, 0, stream>>>(
              num_rois, rois_c.data_ptr<T>(), static_cast<T>(spatial_scale),
              pooled_h, pooled_w, boxes_ptr);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
          const int64_t total = grad_input.numel();
          backward_gather_kernel<scalar_t, T><<<blocks_for(total), kThreads, 0, stream>>>(
              total, grad_c.data_ptr<scalar_t>(), argmax_c.data_ptr<int>(), boxes_ptr,
              num_rois, channels, height, width, pooled_h, pooled_w,
              grad_input.data_ptr<T>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        } else {
          const int64_t total = grad_c.numel();
          backward_atomic_kernel<scalar_t, T><<<blocks_for(total), kThreads, 0, stream>>>(
              total, grad_c.data_ptr<scalar_t>(), rois_c.data_ptr<T>(),
              argmax_c.data_ptr<int>(), channels, height, width, pooled_h, pooled_w,
              grad_input.data_ptr<T>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
      });
  return grad_input.to(grad.scalar_type());
}

} // namespace

TORCH_LIBRARY_IMPL(roi_ops, CUDA, m) {
  m.impl("roi_pool", TORCH_FN(roi_pool_cuda));
  m.impl("_roi_pool_backward", TORCH_FN(roi_pool_backward_cuda));
}

} // namespace roi_ops
