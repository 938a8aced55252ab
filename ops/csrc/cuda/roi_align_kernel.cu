// CUDA kernels of the bilinear operators, roi_align and roi_warp: forward,
// backward with atomics (default) and a deterministic gather backward (under
// torch.use_deterministic_algorithms(True)). Half and bfloat16 inputs are
// read and written in their own type and accumulated in float32. Every
// kernel runs on the current stream.
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
    int64_t sampling_ratio,
    int64_t box_mode,
    bool max_mode,
    scalar_t* __restrict__ output) {
  ROI_OPS_GRID_STRIDE_LOOP(index, total) {
    const int pw = static_cast<int>(index % pooled_w);
    const int ph = static_cast<int>((index / pooled_w) % pooled_h);
    const int64_t c = (index / pooled_w / pooled_h) % channels;
    const int64_t k = index / pooled_w / pooled_h / channels;
    const BilinearBox<T> b = make_bilinear_box(
        rois + k * 5, spatial_scale, pooled_h, pooled_w, sampling_ratio, box_mode);
    const scalar_t* plane = input + (b.batch * channels + c) * height * width;
    T acc = T(0);
    bool first = true;
    for (int iy = 0; iy < b.grid_h; ++iy) {
      const AxisSample<T> ay =
          axis_sample(sample_coord(b.start_h, b.bin_h, ph, iy, b.grid_h), height);
      for (int ix = 0; ix < b.grid_w; ++ix) {
        const AxisSample<T> ax =
            axis_sample(sample_coord(b.start_w, b.bin_w, pw, ix, b.grid_w), width);
        const T v = bilinear_value(plane, width, ay, ax);
        if (!max_mode) {
          acc += v;
        } else if (first || v > acc) {
          acc = v;
        }
        first = false;
      }
    }
    output[index] = static_cast<scalar_t>(max_mode ? acc : acc / b.count);
  }
}

template <typename T>
__device__ inline void atomic_scatter(
    T* plane,
    int64_t width,
    const AxisSample<T>& ay,
    const AxisSample<T>& ax,
    T g) {
  if (!(ay.valid && ax.valid)) {
    return;
  }
  gpuAtomicAdd(plane + ay.low * width + ax.low, g * ay.w_low * ax.w_low);
  gpuAtomicAdd(plane + ay.low * width + ax.high, g * ay.w_low * ax.w_high);
  gpuAtomicAdd(plane + ay.high * width + ax.low, g * ay.w_high * ax.w_low);
  gpuAtomicAdd(plane + ay.high * width + ax.high, g * ay.w_high * ax.w_high);
}

template <typename scalar_t, typename T>
__global__ void backward_atomic_kernel(
    int64_t total,
    const scalar_t* __restrict__ grad,
    const T* __restrict__ rois,
    const scalar_t* __restrict__ input,
    int64_t channels,
    int64_t height,
    int64_t width,
    int64_t pooled_h,
    int64_t pooled_w,
    T spatial_scale,
    int64_t sampling_ratio,
    int64_t box_mode,
    bool max_mode,
    T* __restrict__ grad_input) {
  ROI_OPS_GRID_STRIDE_LOOP(index, total) {
    const int pw = static_cast<int>(index % pooled_w);
    const int ph = static_cast<int>((index / pooled_w) % pooled_h);
    const int64_t c = (index / pooled_w / pooled_h) % channels;
    const int64_t k = index / pooled_w / pooled_h / channels;
    const BilinearBox<T> b = make_bilinear_box(
        rois + k * 5, spatial_scale, pooled_h, pooled_w, sampling_ratio, box_mode);
    const int64_t plane_offset = (b.batch * channels + c) * height * width;
    T* grad_plane = grad_input + plane_offset;
    const T g = static_cast<T>(grad[index]);
    if (max_mode) {
      const int s = max_sample_index(b, input + plane_offset, height, width, ph, pw);
      if (s >= 0) {
        atomic_scatter(
            grad_plane,
            width,
            axis_sample(
                sample_coord(b.start_h, b.bin_h, ph, s / b.grid_w, b.grid_h), height),
            axis_sample(
                sample_coord(b.start_w, b.bin_w, pw, s % b.grid_w, b.grid_w), width),
            g);
      }
      continue;
    }
    const T g_sample = g / b.count;
    for (int iy = 0; iy < b.grid_h; ++iy) {
      const AxisSample<T> ay =
          axis_sample(sample_coord(b.start_h, b.bin_h, ph, iy, b.grid_h), height);
      for (int ix = 0; ix < b.grid_w; ++ix) {
        atomic_scatter(
            grad_plane,
            width,
            ay,
            axis_sample(sample_coord(b.start_w, b.bin_w, pw, ix, b.grid_w), width),
            g_sample);
      }
    }
  }
}

template <typename T>
__global__ void boxes_kernel(
    int64_t num_rois,
    const T* __restrict__ rois,
    T spatial_scale,
    int64_t pooled_h,
    int64_t pooled_w,
    int64_t sampling_ratio,
    int64_t box_mode,
    BilinearBox<T>* __restrict__ boxes) {
  ROI_OPS_GRID_STRIDE_LOOP(k, num_rois) {
    boxes[k] = make_bilinear_box(
        rois + k * 5, spatial_scale, pooled_h, pooled_w, sampling_ratio, box_mode);
  }
}

template <typename scalar_t, typename T>
__global__ void backward_gather_kernel(
    int64_t total,
    const scalar_t* __restrict__ grad,
    const scalar_t* __restrict__ input,
    const BilinearBox<T>* __restrict__ boxes,
    int64_t num_rois,
    int64_t channels,
    int64_t height,
    int64_t width,
    int64_t pooled_h,
    int64_t pooled_w,
    bool max_mode,
    T* __restrict__ grad_input) {
  ROI_OPS_GRID_STRIDE_LOOP(index, total) {
    const int64_t col = index % width;
    const int64_t row = (index / width) % height;
    const int64_t c = (index / width / height) % channels;
    const int64_t n = index / width / height / channels;
    grad_input[index] = bilinear_grad_at_cell(
        grad, input, boxes, num_rois, n, c, row, col, channels, height, width,
        pooled_h, pooled_w, max_mode);
  }
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
  at::cuda::CUDAGuard guard(input.device());
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
  const int64_t total = output.numel();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "roi_ops_bilinear_forward_cuda", [&] {
        using T = at::opmath_type<scalar_t>;
        forward_kernel<scalar_t, T><<<blocks_for(total), kThreads, 0, stream>>>(
            total, input_c.data_ptr<scalar_t>(), rois_c.data_ptr<T>(), channels,
            input.size(2), input.size(3), pooled_h, pooled_w,
            static_cast<T>(spatial_scale), sampling_ratio, box_mode, max_mode,
            output.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return output;
}

at::Tensor roi_align_cuda(
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

at::Tensor roi_warp_cuda(
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

at::Tensor bilinear_backward_cuda(
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
  at::cuda::CUDAGuard guard(grad.device());
  const at::ScalarType acc = acc_type_for(grad.scalar_type());
  at::Tensor grad_input =
      at::zeros({batch_size, channels, height, width}, grad.options().dtype(acc));
  if (grad.numel() == 0 || grad_input.numel() == 0) {
    return grad_input.to(grad.scalar_type());
  }
  const at::Tensor grad_c = grad.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  const at::Tensor input_c = max_mode ? input->contiguous() : at::Tensor();
  const int64_t num_rois = rois.size(0);
  const int64_t pooled_h = grad.size(2);
  const int64_t pooled_w = grad.size(3);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_ops_bilinear_backward_cuda", [&] {
        using T = at::opmath_type<scalar_t>;
        const scalar_t* in = max_mode ? input_c.data_ptr<scalar_t>() : nullptr;
        if (deterministic) {
          at::Tensor boxes = at::empty(
              {num_rois * static_cast<int64_t>(sizeof(BilinearBox<T>))},
              grad.options().dtype(at::kByte));
          auto* boxes_ptr = reinterpret_cast<BilinearBox<T>*>(boxes.data_ptr<uint8_t>());
          boxes_kernel<T><<<blocks_for(num_rois), kThreads, 0, stream>>>(
              num_rois, rois_c.data_ptr<T>(), static_cast<T>(spatial_scale),
              pooled_h, pooled_w, sampling_ratio, box_mode, boxes_ptr);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
          const int64_t total = grad_input.numel();
          backward_gather_kernel<scalar_t, T><<<blocks_for(total), kThreads, 0, stream>>>(
              total, grad_c.data_ptr<scalar_t>(), in, boxes_ptr, num_rois, channels,
              height, width, pooled_h, pooled_w, max_mode, grad_input.data_ptr<T>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        } else {
          const int64_t total = grad_c.numel();
          backward_atomic_kernel<scalar_t, T><<<blocks_for(total), kThreads, 0, stream>>>(
              total, grad_c.data_ptr<scalar_t>(), rois_c.data_ptr<T>(), in, channels,
              height, width, pooled_h, pooled_w, static_cast<T>(spatial_scale),
              sampling_ratio, box_mode, max_mode, grad_input.data_ptr<T>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
      });
  return grad_input.to(grad.scalar_type());
}

} // namespace

TORCH_LIBRARY_IMPL(roi_ops, CUDA, m) {
  m.impl("roi_align", TORCH_FN(roi_align_cuda));
  m.impl("roi_warp", TORCH_FN(roi_warp_cuda));
  m.impl("_bilinear_backward", TORCH_FN(bilinear_backward_cuda));
}

} // namespace roi_ops
