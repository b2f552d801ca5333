// A read-only zip archive: the container of PyTorch's torch.save files (format of PyTorch >= 1.6)
// and of numpy's .npz files. Only what those writers produce: stored or deflated entries, zip64
// sizes and offsets, one disk, no encryption. Every read checks the entry's CRC-32.
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace hessgap::io {

class ZipReader {
 public:
  struct Entry {
    std::string name;                   // as stored, '/'-separated
    std::uint16_t method = 0;           // 0 stored, 8 deflate
    std::uint32_t crc32 = 0;
    std::uint64_t compressed_size = 0;  // bytes in the archive
    std::uint64_t size = 0;             // bytes once read
    std::uint64_t local_header_offset = 0;
  };

  // Opens `path` and reads its central directory (entries in directory order).
  // Errors (hessgap::Error naming the file): missing or unreadable file; no end-of-central-directory
  // record ("truncated or not a zip archive"); a central directory or zip64 record lying outside the
  // file or malformed; a multi-disk archive; an encrypted entry; a compression method other than
  // stored or deflate; duplicate entry names; and declared sizes that the archive cannot hold, checked
  // before anything is read or allocated: a member's stored or compressed size beyond the file's
  // size, a deflated member declaring more than 1032 times its compressed size (deflate's maximum
  // ratio), members whose data overlaps, and members declaring more than kDefaultMaxTotalBytes
  // (64 GiB) uncompressed in total — a limit the environment variable HESSGAP_MAX_ZIP_BYTES
  // replaces. Each of these names the entry. Not a regular file (a FIFO, a device): refused at once.
  explicit ZipReader(const std::string& path);

  static constexpr std::uint64_t kDefaultMaxTotalBytes = std::uint64_t{64} << 30;

  const std::string& path() const { return path_; }
  const std::vector<Entry>& entries() const { return entries_; }
  // The entry called `name`, or nullptr.
  const Entry* find(const std::string& name) const;

  // The entry's bytes (entry.size of them). Errors: the entry's data extends past the end of the
  // file (truncated), a bad local header, corrupt deflate data, a size or CRC-32 mismatch; all name
  // the file and the entry.
  std::string read(const Entry& entry);
  // The same into caller memory of exactly entry.size bytes (no intermediate copy for stored
  // entries, which is how torch.save writes tensor data).
  void read_into(const Entry& entry, void* dst, std::uint64_t n);

 private:
  std::uint64_t data_offset(const Entry& entry);
  void check_declared_sizes() const;

  std::string path_;
  std::uint64_t file_size_ = 0;
  std::ifstream in_;
  std::vector<Entry> entries_;
  std::map<std::string, std::size_t> by_name_;
};

}  // namespace hessgap::io
