#include "plan.h"

namespace lrfused {

void bind_plan(pybind11::module& module) {
  module.def("built_with_cuda", []() {
#ifdef LRFUSED_WITH_CUDA
    return true;
#else
    return false;
#endif
  });
}

}  // namespace lrfused
