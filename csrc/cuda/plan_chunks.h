// Host-side launch planning of the multi-tensor kernels: torch-free and CUDA-free, so a plain C++ test
// (csrc/cuda/plan_chunks_test.cpp, run by tests/test_cuda_plan.py) checks it without a GPU.
//
// Every tensor is cut into chunks of chunk_size elements; one CUDA block handles one (tensor, chunk).
// Blocks are packed into batches that fit the kernel-argument tables (at most max_tensors tensors and
// max_blocks blocks per launch). A tensor whose chunks do not fit in the current batch continues in the
// next one (it then appears in both tables), as in ATen's multi_tensor_apply. Empty tensors get no block.
#pragma once
#include <cstdint>

namespace lrfused {
namespace gpu {

// Sink interface:
//   void add_tensor(int slot, int64_t tensor_index);      // table slot `slot` now refers to that tensor
//   void add_block(int block, int slot, int64_t chunk);   // block `block` of the batch: chunk of slot
//   bool launch(int num_tensors, int num_blocks);         // the batch is full; false aborts planning
// Returns false when a launch returned false.
template <class Sink>
bool plan_chunks(const int64_t* numels, int64_t num_tensors, int64_t chunk_size, int max_tensors,
                 int max_blocks, Sink& sink) {
  int tensors = 0;
  int blocks = 0;
  for (int64_t t = 0; t < num_tensors; ++t) {
    const int64_t n = numels[t];
    if (n <= 0) continue;
    const int64_t chunks = (n + chunk_size - 1) / chunk_size;
    sink.add_tensor(tensors, t);
    int slot = tensors++;
    for (int64_t c = 0; c < chunks; ++c) {
      sink.add_block(blocks++, slot, c);
      const bool last_chunk = c == chunks - 1;
      if (blocks == max_blocks || (tensors == max_tensors && last_chunk)) {
        if (!sink.launch(tensors, blocks)) return false;
        blocks = 0;
        tensors = 0;
        if (!last_chunk) {  // the rest of this tensor goes on in the next batch
          sink.add_tensor(0, t);
          slot = 0;
          tensors = 1;
        }
      }
    }
  }
  if (blocks > 0) return sink.launch(tensors, blocks);
  return true;
}

// Number of blocks plan_chunks emits in all (one per chunk).
inline int64_t count_chunks(const int64_t* numels, int64_t num_tensors, int64_t chunk_size) {
  int64_t total = 0;
  for (int64_t t = 0; t < num_tensors; ++t)
    if (numels[t] > 0) total += (numels[t] + chunk_size - 1) / chunk_size;
  return total;
}

}  // namespace gpu
}  // namespace lrfused
