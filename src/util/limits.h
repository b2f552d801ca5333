// Sizes declared by untrusted files (headers, shapes, config values) are checked before anything is
// allocated: overflow-safe products, and the limits a user may raise through the environment
// (README "Limits"). Torch-free.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace hessgap {

// a * b, or nullopt when the product does not fit in 64 bits.
std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b);

// The number of elements of a tensor of shape `dims`, or nullopt when a dimension is negative or the
// product of its non-zero dimensions exceeds INT64_MAX (LibTorch's sizes and strides are int64, so a
// shape with a zero dimension but huge others is refused as well).
std::optional<std::int64_t> checked_numel(const std::vector<std::int64_t>& dims);

// checked_numel(dims) * element_size, or nullopt when that does not fit in an int64.
std::optional<std::int64_t> checked_nbytes(const std::vector<std::int64_t>& dims, std::uint64_t element_size);

// The value of environment variable `name` when it is set and non-empty, else `fallback`. The value
// is a positive decimal integer, read every call (tests set it). Error (hessgap::Error naming the
// variable) for anything else.
std::uint64_t limit_from_env(const char* name, std::uint64_t fallback);

// This machine's physical memory in bytes (sysconf), or 0 when it cannot be told.
std::uint64_t physical_memory_bytes();

}  // namespace hessgap
