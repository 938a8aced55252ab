// Schemas of the roi_ops operators and their autocast kernels. Backend
// kernels live in cpu/ and cuda/; autograd and fake kernels are registered
// from Python (ops/_library.py) through torch.library.
#include <ATen/autocast_mode.h>
#include <torch/library.h>

#include "checks.h"

namespace roi_ops {

TORCH_LIBRARY(roi_ops, m) {
  m.def(
      "roi_align(Tensor input, Tensor rois, float spatial_scale, "
      "SymInt pooled_height, SymInt pooled_width, int sampling_ratio, "
      "bool aligned, bool max_mode) -> Tensor");
  m.def(
      "roi_warp(Tensor input, Tensor rois, float spatial_scale, "
      "SymInt pooled_height, SymInt pooled_width, int sampling_ratio, "
      "bool max_mode) -> Tensor");
  // box_mode: 0 roi_align(aligned=False), 1 roi_align(aligned=True), 2 roi_warp.
  // input is needed in max mode only (to find each bin's winning sample).
  m.def(
      "_bilinear_backward(Tensor grad, Tensor rois, Tensor? input, "
      "float spatial_scale, SymInt batch_size, SymInt channels, SymInt height, "
      "SymInt width, int sampling_ratio, int box_mode, bool max_mode, "
      "bool deterministic) -> Tensor");
  m.def(
      "roi_pool(Tensor input, Tensor rois, float spatial_scale, "
      "SymInt pooled_height, SymInt pooled_width) -> (Tensor, Tensor)");
  m.def(
      "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, "
      "float spatial_scale, SymInt batch_size, SymInt channels, SymInt height, "
      "SymInt width, bool deterministic) -> Tensor");
  // The per-row decision of the box checks (true = refused), as the checks on
  // a GPU compute it; exposed for the tests.
  m.def(
      "_box_problems(Tensor rois, int batch_size, float spatial_scale, "
      "int pooled_height, int pooled_width, int sampling_ratio) -> Tensor",
      TORCH_FN(box_problems));
}

// Autocast: run in float32 and return the caller's dtype, as torchvision does.
namespace {

template <c10::DispatchKey key, c10::DeviceType device>
struct Autocast {
  static at::Tensor roi_align(
      const at::Tensor& input,
      const at::Tensor& rois,
      double spatial_scale,
      c10::SymInt pooled_height,
      c10::SymInt pooled_width,
      int64_t sampling_ratio,
      bool aligned,
      bool max_mode) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(key);
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("roi_ops::roi_align", "")
                         .typed<decltype(roi_align)>();
    return op
        .call(
            at::autocast::cached_cast(at::kFloat, input, device),
            at::autocast::cached_cast(at::kFloat, rois, device),
            spatial_scale,
            std::move(pooled_height),
            std::move(pooled_width),
            sampling_ratio,
            aligned,
            max_mode)
        .to(input.scalar_type());
  }

  static at::Tensor roi_warp(
      const at::Tensor& input,
      const at::Tensor& rois,
      double spatial_scale,
      c10::SymInt pooled_height,
      c10::SymInt pooled_width,
      int64_t sampling_ratio,
      bool max_mode) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(key);
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("roi_ops::roi_warp", "")
                         .typed<decltype(roi_warp)>();
    return op
        .call(
            at::autocast::cached_cast(at::kFloat, input, device),
            at::autocast::cached_cast(at::kFloat, rois, device),
            spatial_scale,
            std::move(pooled_height),
            std::move(pooled_width),
            sampling_ratio,
            max_mode)
        .to(input.scalar_type());
  }

  static std::tuple<at::Tensor, at::Tensor> roi_pool(
      const at::Tensor& input,
      const at::Tensor& rois,
      double spatial_scale,
      c10::SymInt pooled_height,
      c10::SymInt pooled_width) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(key);
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("roi_ops::roi_pool", "")
                         .typed<decltype(roi_pool)>();
    auto result = op.call(
        at::autocast::cached_cast(at::kFloat, input, device),
        at::autocast::cached_cast(at::kFloat, rois, device),
        spatial_scale,
        std::move(pooled_height),
        std::move(pooled_width));
    return std::make_tuple(
        std::get<0>(result).to(input.scalar_type()),
        std::get<1>(result));
  }
};

using AutocastCUDA = Autocast<c10::DispatchKey::Autocast, c10::DeviceType::CUDA>;
using AutocastCPU = Autocast<c10::DispatchKey::AutocastCPU, c10::DeviceType::CPU>;

} // namespace

TORCH_LIBRARY_IMPL(roi_ops, Autocast, m) {
  m.impl("roi_align", TORCH_FN(AutocastCUDA::roi_align));
  m.impl("roi_warp", TORCH_FN(AutocastCUDA::roi_warp));
  m.impl("roi_pool", TORCH_FN(AutocastCUDA::roi_pool));
}

TORCH_LIBRARY_IMPL(roi_ops, AutocastCPU, m) {
  m.impl("roi_align", TORCH_FN(AutocastCPU::roi_align));
  m.impl("roi_warp", TORCH_FN(AutocastCPU::roi_warp));
  m.impl("roi_pool", TORCH_FN(AutocastCPU::roi_pool));
}

} // namespace roi_ops
