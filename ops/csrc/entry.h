// Host side of every operator, shared by the CPU and CUDA backends: argument
// checks, allocation, contiguity, device guard and dtype dispatch. A backend
// only supplies its kernels, as static member templates of a struct:
//
//   struct Bilinear {   // roi_align and roi_warp
//     static constexpr auto kInputLayout = at::MemoryFormat::Contiguous;
//     template <typename scalar_t, typename T>
//     static void forward(const RoiShape&, const BilinearParams<T>&,
//                         const scalar_t* input, const T* rois, scalar_t* output);
//     template <typename scalar_t, typename T>
//     static void backward(const RoiShape&, const BilinearParams<T>&,
//                          const scalar_t* grad, const T* rois,
//                          const scalar_t* input /* max mode only */,
//                          bool deterministic, T* grad_input);
//   };
//   struct Pool {       // roi_pool
//     static constexpr auto kInputLayout = at::MemoryFormat::ChannelsLast;
//     template <typename scalar_t, typename T>
//     static void forward(const RoiShape&, T spatial_scale, const scalar_t* input,
//                         const T* rois, scalar_t* output, int* argmax);
//     template <typename scalar_t, typename T>
//     static void backward(const RoiShape&, T spatial_scale, const scalar_t* grad,
//                          const T* rois, const int* argmax, bool deterministic,
//                          T* grad_input);
//   };
//
// and registers them with register_bilinear<Bilinear>(m) / register_pool<Pool>(m).
// The feature map (input) is laid out as the backend's kInputLayout asks
// (NCHW or NHWC); every other pointer is to contiguous (NCHW / row-major)
// memory.
// grad_input is zero-filled, in the accumulation type T (float for half and
// bfloat16).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "checks.h"
#include "roi_geometry.h"

namespace roi_ops {

template <typename T>
struct BilinearParams {
  T spatial_scale;
  int64_t sampling_ratio;
  int64_t box_mode;
  bool max_mode;
};

#define ROI_OPS_DISPATCH(type, name, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, type, name, __VA_ARGS__)

inline RoiShape shape_of(
    const at::Tensor& rois,
    int64_t batch,
    int64_t channels,
    int64_t height,
    int64_t width,
    int64_t pooled_h,
    int64_t pooled_w) {
  return RoiShape{rois.size(0), batch, channels, height, width, pooled_h, pooled_w};
}

// A zero gradient for the input, in the accumulation type of grad's dtype.
inline at::Tensor zero_grad_input(const at::Tensor& grad, const RoiShape& s) {
  return at::zeros(
      {s.batch, s.channels, s.height, s.width},
      grad.options().dtype(acc_type_for(grad.scalar_type())));
}

template <typename Backend>
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
  check_sampling_ratio(op, sampling_ratio);
  check_box_values(
      op, rois, input.size(0), spatial_scale, pooled_h, pooled_w, sampling_ratio);
  c10::DeviceGuard guard(input.device());
  const RoiShape shape = shape_of(
      rois, input.size(0), input.size(1), input.size(2), input.size(3), pooled_h, pooled_w);
  at::Tensor output =
      at::empty({shape.num_rois, shape.channels, pooled_h, pooled_w}, input.options());
  if (output.numel() == 0) {
    return output;
  }
  const at::Tensor input_c = input.contiguous(Backend::kInputLayout);
  const at::Tensor rois_c = rois.contiguous();
  ROI_OPS_DISPATCH(input.scalar_type(), "roi_ops_bilinear_forward", [&] {
    using T = at::opmath_type<scalar_t>;
    const BilinearParams<T> params{
        static_cast<T>(spatial_scale), sampling_ratio, box_mode, max_mode};
    Backend::template forward<scalar_t, T>(
        shape, params, input_c.data_ptr<scalar_t>(), rois_c.data_ptr<T>(),
        output.data_ptr<scalar_t>());
  });
  return output;
}

template <typename Backend>
at::Tensor roi_align(
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_h,
    int64_t pooled_w,
    int64_t sampling_ratio,
    bool aligned,
    bool max_mode) {
  return bilinear_forward<Backend>(
      "roi_align", input, rois, spatial_scale, pooled_h, pooled_w, sampling_ratio,
      aligned ? kAlignHalfPixel : kAlignLegacy, max_mode);
}

template <typename Backend>
at::Tensor roi_warp(
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_h,
    int64_t pooled_w,
    int64_t sampling_ratio,
    bool max_mode) {
  return bilinear_forward<Backend>(
      "roi_warp", input, rois, spatial_scale, pooled_h, pooled_w, sampling_ratio,
      kWarp, max_mode);
}

template <typename Backend>
at::Tensor bilinear_backward(
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
  check_bilinear_backward_args(
      grad, rois, input, spatial_scale, batch_size, channels, height, width, sampling_ratio,
      box_mode, max_mode);
  c10::DeviceGuard guard(grad.device());
  const RoiShape shape = shape_of(
      rois, batch_size, channels, height, width, grad.size(2), grad.size(3));
  at::Tensor grad_input = zero_grad_input(grad, shape);
  if (grad.numel() == 0 || grad_input.numel() == 0) {
    return grad_input.to(grad.scalar_type());
  }
  const at::Tensor grad_c = grad.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  const at::Tensor input_c =
      max_mode ? input->contiguous(Backend::kInputLayout) : at::Tensor();
  ROI_OPS_DISPATCH(grad.scalar_type(), "roi_ops_bilinear_backward", [&] {
    using T = at::opmath_type<scalar_t>;
    const BilinearParams<T> params{
        static_cast<T>(spatial_scale), sampling_ratio, box_mode, max_mode};
    Backend::template backward<scalar_t, T>(
        shape, params, grad_c.data_ptr<scalar_t>(), rois_c.data_ptr<T>(),
        max_mode ? input_c.data_ptr<scalar_t>() : nullptr, deterministic,
        grad_input.data_ptr<T>());
  });
  return grad_input.to(grad.scalar_type());
}

template <typename Backend>
std::tuple<at::Tensor, at::Tensor> roi_pool(
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_h,
    int64_t pooled_w) {
  check_forward_args("roi_pool", input, rois, spatial_scale, pooled_h, pooled_w);
  check_box_values(
      "roi_pool", rois, input.size(0), spatial_scale, pooled_h, pooled_w,
      /*sampling_ratio=*/1);
  c10::DeviceGuard guard(input.device());
  const RoiShape shape = shape_of(
      rois, input.size(0), input.size(1), input.size(2), input.size(3), pooled_h, pooled_w);
  at::Tensor output =
      at::empty({shape.num_rois, shape.channels, pooled_h, pooled_w}, input.options());
  at::Tensor argmax = at::empty(output.sizes(), input.options().dtype(at::kInt));
  if (output.numel() == 0) {
    return std::make_tuple(output, argmax);
  }
  const at::Tensor input_c = input.contiguous(Backend::kInputLayout);
  const at::Tensor rois_c = rois.contiguous();
  ROI_OPS_DISPATCH(input.scalar_type(), "roi_ops_roi_pool_forward", [&] {
    using T = at::opmath_type<scalar_t>;
    Backend::template forward<scalar_t, T>(
        shape, static_cast<T>(spatial_scale), input_c.data_ptr<scalar_t>(),
        rois_c.data_ptr<T>(), output.data_ptr<scalar_t>(), argmax.data_ptr<int>());
  });
  return std::make_tuple(output, argmax);
}

template <typename Backend>
at::Tensor roi_pool_backward(
    const at::Tensor& grad,
    const at::Tensor& rois,
    const at::Tensor& argmax,
    double spatial_scale,
    int64_t batch_size,
    int64_t channels,
    int64_t height,
    int64_t width,
    bool deterministic) {
  check_pool_backward_args(
      grad, rois, argmax, spatial_scale, batch_size, channels, height, width);
  c10::DeviceGuard guard(grad.device());
  const RoiShape shape = shape_of(
      rois, batch_size, channels, height, width, grad.size(2), grad.size(3));
  at::Tensor grad_input = zero_grad_input(grad, shape);
  if (grad.numel() == 0 || grad_input.numel() == 0) {
    return grad_input.to(grad.scalar_type());
  }
  const at::Tensor grad_c = grad.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  const at::Tensor argmax_c = argmax.contiguous();
  ROI_OPS_DISPATCH(grad.scalar_type(), "roi_ops_roi_pool_backward", [&] {
    using T = at::opmath_type<scalar_t>;
    Backend::template backward<scalar_t, T>(
        shape, static_cast<T>(spatial_scale), grad_c.data_ptr<scalar_t>(),
        rois_c.data_ptr<T>(), argmax_c.data_ptr<int>(), deterministic,
        grad_input.data_ptr<T>());
  });
  return grad_input.to(grad.scalar_type());
}

template <typename Backend>
void register_bilinear(torch::Library& m) {
  m.impl("roi_align", TORCH_FN(roi_align<Backend>));
  m.impl("roi_warp", TORCH_FN(roi_warp<Backend>));
  m.impl("_bilinear_backward", TORCH_FN(bilinear_backward<Backend>));
}

template <typename Backend>
void register_pool(torch::Library& m) {
  m.impl("roi_pool", TORCH_FN(roi_pool<Backend>));
  m.impl("_roi_pool_backward", TORCH_FN(roi_pool_backward<Backend>));
}

} // namespace roi_ops
