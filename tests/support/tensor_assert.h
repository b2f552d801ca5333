// Test support: tensor comparisons that report what differs, shared by the fixture tests.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

namespace hessgap::testing {

// max |a - b| <= tol * max(|b|_inf, tiny): relative to the reference's scale, so that entries near
// zero are not judged on their own.
inline ::testing::AssertionResult close_rel(const torch::Tensor& a, const torch::Tensor& b, double tol) {
  if (a.sizes() != b.sizes()) {
    return ::testing::AssertionFailure() << "shape " << a.sizes() << " vs " << b.sizes();
  }
  const double err = (a - b).abs().max().item<double>();
  const double scale = std::max(b.abs().max().item<double>(), 1e-300);
  if (err <= tol * scale) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "max abs diff " << err << " > " << tol << " * " << scale;
}

// "a,b,c" → {"a","b","c"} (fixture metadata lists).
inline std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream is(s);
  while (std::getline(is, item, ',')) out.push_back(item);
  return out;
}

}  // namespace hessgap::testing
