#include "checks.h"

#include <cmath>
#include <limits>

namespace roi_ops {

at::ScalarType acc_type_for(at::ScalarType input_type) {
  return input_type == at::kDouble ? at::kDouble : at::kFloat;
}

void check_forward_args(
    const char* op,
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_h,
    int64_t pooled_w) {
  TORCH_CHECK_VALUE(
      input.dim() == 4,
      op, ": input must be a 4-D tensor [N, C, H, W], got shape ", input.sizes());
  TORCH_CHECK_TYPE(
      at::isFloatingType(input.scalar_type()),
      op, ": input must be a floating point tensor, got ", input.scalar_type());
  TORCH_CHECK_VALUE(
      rois.dim() == 2 && rois.size(1) == 5,
      op, ": rois must be a [K, 5] tensor of (batch_index, x1, y1, x2, y2), got shape ",
      rois.sizes());
  TORCH_CHECK_TYPE(
      rois.scalar_type() == acc_type_for(input.scalar_type()),
      op, ": rois must be ", acc_type_for(input.scalar_type()), " for ",
      input.scalar_type(), " input, got ", rois.scalar_type());
  TORCH_CHECK(
      input.device() == rois.device(),
      op, ": input and rois must be on the same device, got input on ",
      input.device(), " and rois on ", rois.device());
  TORCH_CHECK_VALUE(
      pooled_h >= 1 && pooled_w >= 1,
      op, ": output size must be at least 1x1, got ", pooled_h, "x", pooled_w);
  TORCH_CHECK_VALUE(
      std::isfinite(spatial_scale) && spatial_scale > 0,
      op, ": spatial_scale must be a positive finite number, got ", spatial_scale);
  TORCH_CHECK_VALUE(
      input.size(2) * input.size(3) < (int64_t(1) << 31),
      op, ": input feature maps larger than 2^31 cells are not supported, got ",
      input.size(2), "x", input.size(3));
}

namespace {

template <typename T>
void check_rows(
    const char* op,
    const T* rois,
    int64_t num_rois,
    int64_t batch_size,
    double max_width,
    double max_height) {
  for (int64_t k = 0; k < num_rois; ++k) {
    const T* r = rois + k * 5;
    for (int j = 0; j < 5; ++j) {
      TORCH_CHECK_VALUE(
          std::isfinite(static_cast<double>(r[j])),
          op, ": rois[", k, ", ", j, "] = ", r[j], " is not finite");
    }
    const double b = static_cast<double>(r[0]);
    TORCH_CHECK_VALUE(
        b == std::floor(b),
        op, ": rois[", k, ", 0] (batch index) = ", b, " is not an integer");
    TORCH_CHECK_VALUE(
        b >= 0 && b < static_cast<double>(batch_size),
        op, ": rois[", k, ", 0] (batch index) = ", static_cast<int64_t>(b),
        " is out of range for a batch of ", batch_size, " images");
    const double w = std::abs(static_cast<double>(r[3]) - static_cast<double>(r[1]));
    const double h = std::abs(static_cast<double>(r[4]) - static_cast<double>(r[2]));
    TORCH_CHECK_VALUE(
        w <= max_width && h <= max_height,
        op, ": rois[", k, "] = (", r[1], ", ", r[2], ", ", r[3], ", ", r[4],
        ") is too large for adaptive sampling (sampling_ratio <= 0 would take more than ",
        kMaxAdaptiveGrid, " samples per bin and axis); clip the box or pass a fixed sampling_ratio");
  }
}

} // namespace

void check_box_values(
    const char* op,
    const at::Tensor& rois,
    int64_t batch_size,
    double spatial_scale,
    int64_t pooled_h,
    int64_t pooled_w,
    int64_t sampling_ratio) {
  if (rois.size(0) == 0) {
    return;
  }
  // Box sizes (image pixels) above which adaptive sampling is refused.
  const double unlimited = std::numeric_limits<double>::infinity();
  const double max_width = sampling_ratio > 0
      ? unlimited
      : static_cast<double>(kMaxAdaptiveGrid * pooled_w) / spatial_scale;
  const double max_height = sampling_ratio > 0
      ? unlimited
      : static_cast<double>(kMaxAdaptiveGrid * pooled_h) / spatial_scale;
  if (!rois.is_cpu()) {
    // One reduction and one synchronisation; the readable message comes from
    // the CPU check below, run only when something is wrong.
    const at::Tensor b = rois.select(1, 0);
    const at::Tensor w = (rois.select(1, 3) - rois.select(1, 1)).abs();
    const at::Tensor h = (rois.select(1, 4) - rois.select(1, 2)).abs();
    const at::Tensor bad = at::logical_not(at::isfinite(rois)).any() |
        (b != at::floor(b)).any() | (b < 0).any() | (b >= batch_size).any() |
        (w > max_width).any() | (h > max_height).any();
    if (!bad.item<bool>()) {
      return;
    }
  }
  const at::Tensor cpu = rois.to(at::kCPU).contiguous();
  AT_DISPATCH_FLOATING_TYPES(cpu.scalar_type(), "check_box_values", [&] {
    check_rows(op, cpu.data_ptr<scalar_t>(), cpu.size(0), batch_size, max_width, max_height);
  });
}

void check_bilinear_backward_args(
    const at::Tensor& grad,
    const at::Tensor& rois,
    const std::optional<at::Tensor>& input,
    int64_t channels,
    bool max_mode) {
  TORCH_CHECK_VALUE(
      grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == channels,
      "roi_ops::_bilinear_backward: grad must be [K, C, PH, PW] matching rois and channels");
  TORCH_CHECK_VALUE(
      !max_mode || (input.has_value() && input->dim() == 4),
      "roi_ops::_bilinear_backward: max mode needs the forward input");
}

void check_pool_backward_args(
    const at::Tensor& grad,
    const at::Tensor& rois,
    const at::Tensor& argmax,
    int64_t channels) {
  TORCH_CHECK_VALUE(
      grad.dim() == 4 && grad.sizes() == argmax.sizes() &&
          grad.size(0) == rois.size(0) && grad.size(1) == channels,
      "roi_ops::_roi_pool_backward: grad and argmax must be [K, C, PH, PW] matching rois");
}

} // namespace roi_ops
