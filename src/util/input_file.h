// Input files are regular files: checked with stat() before anything opens them, because opening a
// FIFO blocks until a writer comes and a device (/dev/zero, /dev/urandom) streams without end.
// Torch-free.
#pragma once

#include <cstdint>
#include <string>

namespace hessgap {

// Returns the size in bytes of `path` (symbolic links followed) when it is a regular file.
// `what` names the input in messages, e.g. "checkpoint", "image file".
// Errors (hessgap::Error): "<what> '<path>' not found"; "<what> '<path>' is not a regular file: it is
// a FIFO" (or a directory, a character device, a block device, a socket); stat's other failures
// (permissions) with their reason.
std::uint64_t require_regular_file(const std::string& path, const std::string& what);

// The same refusal for callers that report a missing or unreadable file in their own words: nothing
// happens when `path` cannot be stat'ed (the caller's open then fails as before); an existing path
// that is not a regular file is refused as above.
void refuse_special_file(const std::string& path, const std::string& what);

}  // namespace hessgap
