// Launch helpers shared by the CUDA kernels.
#pragma once

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>

#include <algorithm>
#include <cstdint>

namespace roi_ops {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items.
inline unsigned int blocks_for(int64_t n) {
  const int64_t max_blocks =
      int64_t(at::cuda::getCurrentDeviceProperties()->multiProcessorCount) * 32;
  return static_cast<unsigned int>(
      std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, max_blocks)));
}

#define ROI_OPS_GRID_STRIDE_LOOP(i, n)                                     \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); \
       i += int64_t(blockDim.x) * gridDim.x)

template <typename F>
__global__ void for_each_kernel(int64_t n, F f) {
  ROI_OPS_GRID_STRIDE_LOOP(i, n) {
    f(i);
  }
}

// The CUDA Exec for the sorted deterministic backward (roi_sorted.h): f(i)
// for every index, in a grid-stride kernel on the current stream.
struct CudaExec {
  static at::TensorOptions options() {
    return at::TensorOptions().device(at::kCUDA, at::cuda::current_device());
  }

  template <typename F>
  static void for_each(int64_t n, const F& f) {
    if (n == 0) {
      return;
    }
    for_each_kernel<<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(n, f);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

} // namespace roi_ops
