// Plain C++ test of plan_chunks.h (no CUDA, no torch): every (tensor, chunk) pair is planned exactly
// once, no batch exceeds its table limits, and every block refers to a slot holding its tensor.
// Built and run by tests/test_cuda_plan.py; exits non-zero with a message on the first failure.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <utility>
#include <vector>

#include "cuda/plan_chunks.h"

namespace {

int failures = 0;

#define EXPECT(cond, ...)                                        \
  do {                                                           \
    if (!(cond)) {                                               \
      std::fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                         \
      std::fprintf(stderr, "\n");                                \
      ++failures;                                                \
    }                                                            \
  } while (0)

struct Recorder {
  int max_tensors;
  int max_blocks;
  std::vector<int64_t> slots;                            // current batch: slot -> tensor
  std::vector<std::pair<int, int64_t>> blocks;           // current batch: (slot, chunk)
  std::map<std::pair<int64_t, int64_t>, int> seen;       // (tensor, chunk) -> times planned
  int launches = 0;
  int abort_after = -1;

  void add_tensor(int slot, int64_t t) {
    EXPECT(slot == static_cast<int>(slots.size()), "slot %d added out of order (have %zu)", slot, slots.size());
    slots.push_back(t);
  }
  void add_block(int block, int slot, int64_t chunk) {
    EXPECT(block == static_cast<int>(blocks.size()), "block %d added out of order", block);
    EXPECT(slot >= 0 && slot < static_cast<int>(slots.size()), "block refers to unknown slot %d", slot);
    blocks.emplace_back(slot, chunk);
  }
  bool launch(int num_tensors, int num_blocks) {
    EXPECT(num_tensors == static_cast<int>(slots.size()), "launch tensors %d != %zu", num_tensors, slots.size());
    EXPECT(num_blocks == static_cast<int>(blocks.size()), "launch blocks %d != %zu", num_blocks, blocks.size());
    EXPECT(num_tensors <= max_tensors, "batch has %d tensors > %d", num_tensors, max_tensors);
    EXPECT(num_blocks <= max_blocks && num_blocks > 0, "batch has %d blocks (max %d)", num_blocks, max_blocks);
    for (const auto& b : blocks) seen[{slots[b.first], b.second}] += 1;
    slots.clear();
    blocks.clear();
    ++launches;
    return abort_after < 0 || launches < abort_after;
  }
};

void check_plan(const std::vector<int64_t>& numels, int64_t chunk, int max_tensors, int max_blocks) {
  Recorder r{max_tensors, max_blocks, {}, {}, {}, 0, -1};
  const bool ok = lrfused::gpu::plan_chunks(numels.data(), static_cast<int64_t>(numels.size()), chunk, max_tensors,
                                            max_blocks, r);
  EXPECT(ok, "planning aborted");
  EXPECT(r.slots.empty() && r.blocks.empty(), "work left unlaunched");
  int64_t expected_blocks = 0;
  for (size_t t = 0; t < numels.size(); ++t) {
    const int64_t chunks = numels[t] > 0 ? (numels[t] + chunk - 1) / chunk : 0;
    expected_blocks += chunks;
    for (int64_t c = 0; c < chunks; ++c) {
      auto it = r.seen.find({static_cast<int64_t>(t), c});
      EXPECT(it != r.seen.end() && it->second == 1, "tensor %zu chunk %lld planned %d times", t,
             static_cast<long long>(c), it == r.seen.end() ? 0 : it->second);
    }
  }
  EXPECT(static_cast<int64_t>(r.seen.size()) == expected_blocks, "planned %zu distinct blocks, expected %lld",
         r.seen.size(), static_cast<long long>(expected_blocks));
  EXPECT(lrfused::gpu::count_chunks(numels.data(), static_cast<int64_t>(numels.size()), chunk) == expected_blocks,
         "count_chunks disagrees");
}

}  // namespace

int main() {
  const int64_t C = 65536;
  check_plan({}, C, 36, 320);
  check_plan({0, 0, 0}, C, 36, 320);
  check_plan({1, 3, 97, 4097, 65537, 0, 65536, 131072}, C, 36, 320);
  check_plan(std::vector<int64_t>(5000, 17), C, 36, 320);        // thousands of tiny tensors
  check_plan(std::vector<int64_t>(5000, 17), C, 417, 1536);
  check_plan({C * 1000 + 5}, C, 36, 320);                        // one tensor over many batches
  check_plan({C * 319 + 1, C * 2, 5, C * 400}, C, 2, 320);       // carry-over with a full tensor table
  check_plan({3, C * 3, 7}, C, 1, 2);                            // degenerate limits
  check_plan({(int64_t{1} << 31) + 12345}, C, 36, 320);          // > 2^31 elements
  std::vector<int64_t> mixed;
  for (int i = 0; i < 3000; ++i) mixed.push_back((i * 7919) % 200000);
  check_plan(mixed, C, 36, 320);
  check_plan(mixed, C, 584, 1536);

  // A failed launch stops planning.
  std::vector<int64_t> many(100, C);
  Recorder r{10, 4, {}, {}, {}, 0, 2};
  EXPECT(!lrfused::gpu::plan_chunks(many.data(), 100, C, 10, 4, r), "abort not propagated");
  EXPECT(r.launches == 2, "%d launches after abort", r.launches);

  if (failures == 0) std::printf("plan_chunks: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
