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

// Scratch memory for n objects of type Item on the current CUDA device,
// from PyTorch's caching allocator.
template <typename Item>
at::Tensor device_buffer(int64_t n) {
  return at::empty(
      {n * static_cast<int64_t>(sizeof(Item))},
      at::TensorOptions().dtype(at::kByte).device(at::kCUDA, at::cuda::current_device()));
}

#define ROI_OPS_GRID_STRIDE_LOOP(i, n)                                     \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); \
       i += int64_t(blockDim.x) * gridDim.x)

} // namespace roi_ops
