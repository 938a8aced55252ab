#include "checks.h"

#include "roi_geometry.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

namespace roi_ops {

at::ScalarType acc_type_for(at::ScalarType input_type) {
  return input_type == at::kDouble ? at::kDouble : at::kFloat;
}

namespace {

// The feature tensor (input of a forward, grad of a backward) and the rois
// that go with it: [K, 5], in its accumulation type, on its device.
void check_tensor_and_rois(
    const char* op,
    const char* name,
    const at::Tensor& features,
    const at::Tensor& rois) {
  TORCH_CHECK_VALUE(
      features.dim() == 4,
      op, ": ", name, " must be a 4-D tensor [N, C, H, W], got shape ", features.sizes());
  TORCH_CHECK_TYPE(
      at::isFloatingType(features.scalar_type()),
      op, ": ", name, " must be a floating point tensor, got ", features.scalar_type());
  TORCH_CHECK_VALUE(
      rois.dim() == 2 && rois.size(1) == 5,
      op, ": rois must be a [K, 5] tensor of (batch_index, x1, y1, x2, y2), got shape ",
      rois.sizes());
  TORCH_CHECK_TYPE(
      rois.scalar_type() == acc_type_for(features.scalar_type()),
      op, ": rois must be ", acc_type_for(features.scalar_type()), " for ",
      features.scalar_type(), " ", name, ", got ", rois.scalar_type());
  TORCH_CHECK(
      features.device() == rois.device(),
      op, ": ", name, " and rois must be on the same device, got ", name, " on ",
      features.device(), " and rois on ", rois.device());
}

void check_scale(const char* op, double spatial_scale) {
  TORCH_CHECK_VALUE(
      std::isfinite(spatial_scale) && spatial_scale > 0,
      op, ": spatial_scale must be a positive finite number, got ", spatial_scale);
}

// Feature maps from 1x1 to below 2^31 cells (each side checked first, so the
// product cannot overflow). A map with no cells is allowed only when no box
// reads it (K = 0): a box on it would have no cell to read or write.
void check_map_size(const char* op, int64_t height, int64_t width, int64_t num_rois) {
  TORCH_CHECK_VALUE(
      height < (int64_t(1) << 31) && width < (int64_t(1) << 31) &&
          height * width < (int64_t(1) << 31),
      op, ": input feature maps larger than 2^31 cells are not supported, got ",
      height, "x", width);
  TORCH_CHECK_VALUE(
      num_rois == 0 || (height >= 1 && width >= 1),
      op, ": the feature map is ", height, "x", width, " (height x width), which has no cell "
      "for the ", num_rois, " boxes to read; pass no boxes for an empty map");
}

} // namespace

void check_sampling_ratio(const char* op, int64_t sampling_ratio) {
  TORCH_CHECK_VALUE(
      sampling_ratio <= kMaxAdaptiveGrid,
      op, ": sampling_ratio must be at most ", kMaxAdaptiveGrid,
      " (samples per bin and axis; <= 0 means adaptive), got ", sampling_ratio);
}

void check_forward_args(
    const char* op,
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_h,
    int64_t pooled_w) {
  check_tensor_and_rois(op, "input", input, rois);
  TORCH_CHECK_VALUE(
      pooled_h >= 1 && pooled_w >= 1,
      op, ": output size must be at least 1x1, got ", pooled_h, "x", pooled_w);
  check_scale(op, spatial_scale);
  check_map_size(op, input.size(2), input.size(3), rois.size(0));
}

bool synchronous_checks() {
  const char* value = std::getenv("ROI_OPS_SYNC_CHECKS");
  return value != nullptr && *value != '\0' && std::string(value) != "0";
}

namespace {

// Largest box side (image pixels) adaptive sampling takes for `pooled` bins.
double max_box_size(int64_t pooled, double spatial_scale) {
  return static_cast<double>(kMaxAdaptiveGrid * pooled) / spatial_scale;
}

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

at::Tensor box_problems(
    const at::Tensor& rois,
    int64_t batch_size,
    double spatial_scale,
    int64_t pooled_h,
    int64_t pooled_w,
    int64_t sampling_ratio) {
  TORCH_CHECK_VALUE(
      rois.dim() == 2 && rois.size(1) == 5,
      "box_problems: rois must be a [K, 5] tensor, got shape ", rois.sizes());
  // In float64, as check_rows computes: a box at the size limit is decided
  // alike on every device.
  const at::Tensor r = rois.to(at::kDouble);
  const at::Tensor b = r.select(1, 0);
  const at::Tensor w = (r.select(1, 3) - r.select(1, 1)).abs();
  const at::Tensor h = (r.select(1, 4) - r.select(1, 2)).abs();
  at::Tensor bad = at::logical_not(at::isfinite(r)).any(1) | (b != at::floor(b)) | (b < 0) |
      (b >= batch_size);
  if (sampling_ratio <= 0) {
    bad = bad | (w > max_box_size(pooled_w, spatial_scale)) |
        (h > max_box_size(pooled_h, spatial_scale));
  }
  return bad;
}

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
  // No image to take a box from: refused from the shapes alone, on every
  // device (on a GPU the value check below would stop the process's CUDA
  // context for what the shapes already tell).
  TORCH_CHECK_VALUE(
      batch_size > 0, op, ": rois holds ", rois.size(0),
      " boxes but input holds no image (batch size 0), so no batch index is valid");
  // Box sizes (image pixels) above which adaptive sampling is refused.
  const double unlimited = std::numeric_limits<double>::infinity();
  const double max_width = sampling_ratio > 0 ? unlimited : max_box_size(pooled_w, spatial_scale);
  const double max_height = sampling_ratio > 0 ? unlimited : max_box_size(pooled_h, spatial_scale);
  if (!rois.is_cpu()) {
    const at::Tensor bad = box_problems(rois, batch_size, spatial_scale, pooled_h, pooled_w,
                                        sampling_ratio).any();
    if (!synchronous_checks()) {
      // No synchronisation: a device-side assertion queued before the
      // kernels, which stops the stream (and the process's CUDA context)
      // before a bad box is read.
      at::_assert_async(
          at::logical_not(bad),
          std::string(op) +
              ": rois holds a non-finite value, a batch index that is not an integer in [0, " +
              std::to_string(batch_size) +
              "), or a box too large for adaptive sampling; rerun with ROI_OPS_SYNC_CHECKS=1 "
              "for the offending row");
      return;
    }
    // One reduction and one synchronisation; the readable message comes from
    // the CPU check below, run only when something is wrong.
    if (!bad.item<bool>()) {
      return;
    }
  }
  const at::Tensor cpu = rois.to(at::kCPU).contiguous();
  AT_DISPATCH_FLOATING_TYPES(cpu.scalar_type(), "check_box_values", [&] {
    check_rows(op, cpu.data_ptr<scalar_t>(), cpu.size(0), batch_size, max_width, max_height);
  });
}

namespace {

// The shape of the gradient a backward writes, and grad's agreement with it.
void check_backward_shape(
    const char* op,
    const at::Tensor& grad,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t batch_size,
    int64_t channels,
    int64_t height,
    int64_t width) {
  check_tensor_and_rois(op, "grad", grad, rois);
  check_scale(op, spatial_scale);
  TORCH_CHECK_VALUE(
      batch_size >= 0 && channels >= 0 && height >= 0 && width >= 0,
      op, ": the input size must not be negative, got batch_size=", batch_size,
      ", channels=", channels, ", height=", height, ", width=", width);
  check_map_size(op, height, width, rois.size(0));
  TORCH_CHECK_VALUE(
      grad.size(0) == rois.size(0) && grad.size(1) == channels,
      op, ": grad must be [K, C, PH, PW] for K = ", rois.size(0), " rois and C = ",
      channels, " channels, got shape ", grad.sizes());
  TORCH_CHECK_VALUE(
      grad.size(2) >= 1 && grad.size(3) >= 1,
      op, ": grad's output size must be at least 1x1, got ", grad.size(2), "x", grad.size(3));
}

} // namespace

void check_bilinear_backward_args(
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
    bool max_mode) {
  const char* op = "roi_ops::_bilinear_backward";
  check_backward_shape(op, grad, rois, spatial_scale, batch_size, channels, height, width);
  TORCH_CHECK_VALUE(
      box_mode == kAlignLegacy || box_mode == kAlignHalfPixel || box_mode == kWarp,
      op, ": box_mode must be ", kAlignLegacy, " (roi_align), ", kAlignHalfPixel,
      " (roi_align, aligned) or ", kWarp, " (roi_warp), got ", box_mode);
  check_sampling_ratio(op, sampling_ratio);
  if (max_mode) {
    TORCH_CHECK_VALUE(
        input.has_value() && input->defined(),
        op, ": max mode needs the forward input (to find each bin's winning sample)");
    TORCH_CHECK_VALUE(
        input->sizes() == at::IntArrayRef({batch_size, channels, height, width}),
        op, ": input must be the forward input, shaped [batch_size, channels, height, width]"
        " = [", batch_size, ", ", channels, ", ", height, ", ", width, "], got ",
        input->sizes());
    TORCH_CHECK_TYPE(
        input->scalar_type() == grad.scalar_type(),
        op, ": input must have grad's dtype ", grad.scalar_type(), ", got ",
        input->scalar_type());
    TORCH_CHECK(
        input->device() == grad.device(),
        op, ": input and grad must be on the same device, got input on ", input->device(),
        " and grad on ", grad.device());
  }
  check_box_values(
      op, rois, batch_size, spatial_scale, grad.size(2), grad.size(3), sampling_ratio);
}

void check_pool_backward_args(
    const at::Tensor& grad,
    const at::Tensor& rois,
    const at::Tensor& argmax,
    double spatial_scale,
    int64_t batch_size,
    int64_t channels,
    int64_t height,
    int64_t width) {
  const char* op = "roi_ops::_roi_pool_backward";
  check_backward_shape(op, grad, rois, spatial_scale, batch_size, channels, height, width);
  TORCH_CHECK_VALUE(
      argmax.sizes() == grad.sizes(),
      op, ": argmax must be shaped like grad ", grad.sizes(), ", got ", argmax.sizes());
  TORCH_CHECK_TYPE(
      argmax.scalar_type() == at::kInt,
      op, ": argmax must be int32 (as roi_pool returns it), got ", argmax.scalar_type());
  TORCH_CHECK(
      argmax.device() == grad.device(),
      op, ": argmax and grad must be on the same device, got argmax on ", argmax.device(),
      " and grad on ", grad.device());
  check_box_values(op, rois, batch_size, spatial_scale, grad.size(2), grad.size(3), 1);
  if (argmax.numel() > 0 && !argmax.is_cpu() && !synchronous_checks()) {
    at::_assert_async(
        ((argmax >= -1) & (argmax < height * width)).all(),
        std::string(op) + ": argmax holds an index that is neither -1 (an empty bin) nor a cell of "
            "the " + std::to_string(height) + "x" + std::to_string(width) +
            " map; rerun with ROI_OPS_SYNC_CHECKS=1 for the range");
  } else if (argmax.numel() > 0) {
    const auto [low, high] = at::aminmax(argmax);
    const int64_t lowest = low.item<int64_t>();
    const int64_t highest = high.item<int64_t>();
    TORCH_CHECK_VALUE(
        lowest >= -1 && highest < height * width,
        op, ": argmax holds cell indices from ", lowest, " to ", highest,
        "; each must be -1 (an empty bin) or a cell of the ", height, "x", width, " map");
  }
}

} // namespace roi_ops
