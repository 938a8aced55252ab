// Argument checks shared by the CPU and CUDA entry points. The Python API
// checks the same things first with friendlier names; these keep direct
// callers of torch.ops.roi_ops.* from crashing or reading out of bounds.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace roi_ops {

// Type of the box coordinates and of accumulation for an input dtype:
// double for double, float for float, half and bfloat16.
at::ScalarType acc_type_for(at::ScalarType input_type);

// Shapes, dtypes, devices and sizes of a forward call; a map with a zero
// height or width is refused when there are boxes to pool from it.
void check_forward_args(
    const char* op,
    const at::Tensor& input,
    const at::Tensor& rois,
    double spatial_scale,
    int64_t pooled_h,
    int64_t pooled_w);

// Largest adaptive sampling grid (per bin and axis) a box may ask for; a box
// that needs more is thousands of cells wide, a bug upstream, and would take
// minutes to pool.
constexpr int64_t kMaxAdaptiveGrid = 1024;

// A fixed sampling_ratio is at most kMaxAdaptiveGrid too.
void check_sampling_ratio(const char* op, int64_t sampling_ratio);

// Whether checks of tensor values on a GPU wait for the answer, to report the
// offending value (environment variable ROI_OPS_SYNC_CHECKS=1), instead of
// queueing a device-side assertion that costs no synchronisation (the default).
bool synchronous_checks();

// One flag per box row, true where check_box_values refuses the row, computed
// with tensor operations in float64 on the rois' device: what the checks on a
// GPU decide, and the same decision the CPU check makes row by row.
at::Tensor box_problems(
    const at::Tensor& rois,
    int64_t batch_size,
    double spatial_scale,
    int64_t pooled_h,
    int64_t pooled_w,
    int64_t sampling_ratio);

// Every box row: finite coordinates and an integral batch index in
// [0, batch_size); with adaptive sampling (sampling_ratio <= 0), a sample
// grid no larger than kMaxAdaptiveGrid. On CPU tensors a failed check names the
// row; on a GPU see synchronous_checks.
void check_box_values(
    const char* op,
    const at::Tensor& rois,
    int64_t batch_size,
    double spatial_scale,
    int64_t pooled_h,
    int64_t pooled_w,
    int64_t sampling_ratio);

// Everything a backward call indexes with, checked against what it writes:
// grad [K, C, PH, PW] against rois [K, 5] and channels; the gradient's size
// (batch_size, channels, height, width) non-negative and below 2^31 cells per
// map, with at least one cell when there are boxes; every box's batch index inside batch_size (check_box_values); the box
// placement code; in max mode the forward input, shaped [batch_size, channels,
// height, width]; roi_pool's argmax shaped like grad with every entry -1 (an
// empty bin) or a cell of the height x width map. On a GPU, as
// synchronous_checks says.
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
    bool max_mode);
void check_pool_backward_args(
    const at::Tensor& grad,
    const at::Tensor& rois,
    const at::Tensor& argmax,
    double spatial_scale,
    int64_t batch_size,
    int64_t channels,
    int64_t height,
    int64_t width);

} // namespace roi_ops
