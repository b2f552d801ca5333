#include "io/zip_reader.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>

#include "util/error.h"
#include "util/input_file.h"
#include "util/limits.h"

namespace hessgap::io {

namespace {

constexpr std::uint32_t kLocalSig = 0x04034b50;
constexpr std::uint32_t kCentralSig = 0x02014b50;
constexpr std::uint32_t kEndSig = 0x06054b50;
constexpr std::uint32_t kZip64EndSig = 0x06064b50;
constexpr std::uint32_t kZip64LocatorSig = 0x07064b50;
constexpr std::uint64_t kEndSize = 22;
constexpr std::uint64_t kMaxComment = 0xffff;
// Deflate cannot expand data more than 1032-fold (a 258-byte match per 2 bits); the slack covers a
// tiny stream's block header. A member declaring more is lying, whatever its data.
constexpr std::uint64_t kMaxDeflateRatio = 1032;
constexpr std::uint64_t kDeflateSlack = 1024;

std::uint64_t le(const unsigned char* p, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// zlib's lengths are 32-bit; feed it in chunks.
std::uint32_t crc_update(std::uint32_t crc, const void* data, std::uint64_t n) {
  const auto* p = static_cast<const Bytef*>(data);
  while (n > 0) {
    const uInt chunk = static_cast<uInt>(std::min<std::uint64_t>(n, 1u << 30));
    crc = static_cast<std::uint32_t>(::crc32(crc, p, chunk));
    p += chunk;
    n -= chunk;
  }
  return crc;
}

}  // namespace

ZipReader::ZipReader(const std::string& path) : path_(path) {
  file_size_ = require_regular_file(path, "zip archive");
  in_.open(path, std::ios::binary);
  HG_CHECK(in_, "cannot open zip archive '" << path << "' for reading");

  auto read_at = [&](std::uint64_t offset, std::uint64_t n, const char* what) {
    HG_CHECK(offset <= file_size_ && n <= file_size_ - offset,
             "zip archive '" << path_ << "' is truncated or corrupt: its " << what << " lies beyond the end of the file");
    std::string buf(n, '\0');
    in_.seekg(static_cast<std::streamoff>(offset));
    in_.read(buf.data(), static_cast<std::streamsize>(n));
    HG_CHECK(in_, "cannot read the " << what << " of zip archive '" << path_ << "'");
    return buf;
  };

  // The end-of-central-directory record is the last thing in the file, followed only by a comment
  // of at most 64 KiB; a truncated file has lost it.
  const std::uint64_t tail_size = std::min(file_size_, kEndSize + kMaxComment);
  const std::string tail = read_at(file_size_ - tail_size, tail_size, "end record");
  const auto* t = reinterpret_cast<const unsigned char*>(tail.data());
  std::int64_t end_pos = -1;
  for (std::int64_t i = static_cast<std::int64_t>(tail_size) - static_cast<std::int64_t>(kEndSize); i >= 0; --i) {
    if (le(t + i, 4) == kEndSig && i + kEndSize + le(t + i + 20, 2) == tail_size) {
      end_pos = i;
      break;
    }
  }
  HG_CHECK(end_pos >= 0, "zip archive '" << path_ << "' has no end-of-central-directory record (" << file_size_
                                         << " bytes): the file is truncated or not a zip archive");
  const unsigned char* e = t + end_pos;
  const std::uint64_t end_offset = file_size_ - tail_size + static_cast<std::uint64_t>(end_pos);
  std::uint64_t disk = le(e + 4, 2), cd_disk = le(e + 6, 2);
  std::uint64_t count = le(e + 10, 2), cd_size = le(e + 12, 4), cd_offset = le(e + 16, 4);

  // zip64: the 16/32-bit fields are saturated and the real values sit in the zip64 end record,
  // found through the locator just before the classic end record.
  if (count == 0xffff || cd_size == 0xffffffff || cd_offset == 0xffffffff) {
    HG_CHECK(end_offset >= 20, "zip archive '" << path_ << "': zip64 archive without a zip64 locator");
    const std::string loc = read_at(end_offset - 20, 20, "zip64 locator");
    const auto* l = reinterpret_cast<const unsigned char*>(loc.data());
    HG_CHECK(le(l, 4) == kZip64LocatorSig, "zip archive '" << path_ << "': zip64 archive without a zip64 locator");
    const std::string rec = read_at(le(l + 8, 8), 56, "zip64 end record");
    const auto* r = reinterpret_cast<const unsigned char*>(rec.data());
    HG_CHECK(le(r, 4) == kZip64EndSig, "zip archive '" << path_ << "': malformed zip64 end record");
    disk = le(r + 16, 4);
    cd_disk = le(r + 20, 4);
    count = le(r + 32, 8);
    cd_size = le(r + 40, 8);
    cd_offset = le(r + 48, 8);
  }
  HG_CHECK(disk == 0 && cd_disk == 0, "zip archive '" << path_ << "' spans several disks (not supported)");

  const std::string cd = read_at(cd_offset, cd_size, "central directory");
  const auto* c = reinterpret_cast<const unsigned char*>(cd.data());
  std::uint64_t pos = 0;
  for (std::uint64_t k = 0; k < count; ++k) {
    HG_CHECK(pos + 46 <= cd_size && le(c + pos, 4) == kCentralSig,
             "zip archive '" << path_ << "': malformed central directory (entry " << k << " of " << count << ")");
    const unsigned char* h = c + pos;
    const std::uint64_t name_len = le(h + 28, 2), extra_len = le(h + 30, 2), comment_len = le(h + 32, 2);
    HG_CHECK(pos + 46 + name_len + extra_len + comment_len <= cd_size,
             "zip archive '" << path_ << "': malformed central directory (entry " << k << " of " << count << ")");
    Entry entry;
    entry.name.assign(reinterpret_cast<const char*>(h + 46), name_len);
    const std::uint64_t flags = le(h + 8, 2);
    entry.method = static_cast<std::uint16_t>(le(h + 10, 2));
    entry.crc32 = static_cast<std::uint32_t>(le(h + 16, 4));
    entry.compressed_size = le(h + 20, 4);
    entry.size = le(h + 24, 4);
    std::uint64_t entry_disk = le(h + 34, 2);
    entry.local_header_offset = le(h + 42, 4);
    // The zip64 extra field holds, in this order, only the fields saturated above.
    const unsigned char* x = h + 46 + name_len;
    for (std::uint64_t q = 0; q + 4 <= extra_len;) {
      const std::uint64_t id = le(x + q, 2), len = le(x + q + 2, 2);
      HG_CHECK(q + 4 + len <= extra_len, "zip archive '" << path_ << "': malformed extra field of entry '"
                                                         << entry.name << "'");
      if (id == 0x0001) {
        std::uint64_t f = q + 4;
        auto take = [&](std::uint64_t& field, int bytes) {
          HG_CHECK(f + bytes <= q + 4 + len, "zip archive '" << path_ << "': short zip64 field in entry '"
                                                             << entry.name << "'");
          field = le(x + f, bytes);
          f += bytes;
        };
        if (entry.size == 0xffffffff) take(entry.size, 8);
        if (entry.compressed_size == 0xffffffff) take(entry.compressed_size, 8);
        if (entry.local_header_offset == 0xffffffff) take(entry.local_header_offset, 8);
        if (entry_disk == 0xffff) take(entry_disk, 4);
      }
      q += 4 + len;
    }
    HG_CHECK((flags & 1) == 0, "zip archive '" << path_ << "': entry '" << entry.name << "' is encrypted");
    HG_CHECK(entry.method == 0 || entry.method == 8,
             "zip archive '" << path_ << "': entry '" << entry.name << "' uses compression method " << entry.method
                             << " (only stored and deflate are supported)");
    HG_CHECK(entry.method != 0 || entry.size == entry.compressed_size,
             "zip archive '" << path_ << "': stored entry '" << entry.name << "' has different sizes");
    HG_CHECK(by_name_.emplace(entry.name, entries_.size()).second,
             "zip archive '" << path_ << "' holds entry '" << entry.name << "' twice");
    entries_.push_back(std::move(entry));
    pos += 46 + name_len + extra_len + comment_len;
  }
  check_declared_sizes();
}

void ZipReader::check_declared_sizes() const {
  const std::uint64_t max_total = limit_from_env("HESSGAP_MAX_ZIP_BYTES", kDefaultMaxTotalBytes);
  std::uint64_t total = 0;
  for (const Entry& e : entries_) {
    const std::string where = "entry '" + e.name + "' of zip archive '" + path_ + "'";
    HG_CHECK(e.compressed_size <= file_size_, where << " declares " << e.compressed_size << " bytes of "
                                                    << (e.method == 0 ? "stored" : "compressed") << " data, but the archive has only "
                                                    << file_size_ << " bytes (truncated or forged)");
    HG_CHECK(e.method != 8 || e.size <= e.compressed_size * kMaxDeflateRatio + kDeflateSlack,
             where << " declares " << e.size << " bytes uncompressed from " << e.compressed_size
                   << " bytes of deflate data, more than deflate's maximum ratio of " << kMaxDeflateRatio
                   << ":1 allows (forged sizes)");
    total = e.size > max_total - std::min(total, max_total) ? max_total + 1 : total + e.size;
    HG_CHECK(total <= max_total, "zip archive '" << path_ << "': its members declare more than the limit of " << max_total
                                                 << " bytes uncompressed in total (reached at " << e.size
                                                 << "-byte entry '" << e.name
                                                 << "'); raise it with the environment variable HESSGAP_MAX_ZIP_BYTES");
  }
  // Members whose data overlaps (one member's bytes counted again by another) are how zip bombs
  // multiply a small file; an archive written by any zip writer has disjoint members, so their
  // declared sizes are then bounded by the file's size.
  std::vector<const Entry*> by_offset;
  for (const Entry& e : entries_) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const Entry* a, const Entry* b) { return a->local_header_offset < b->local_header_offset; });
  for (std::size_t k = 0; k + 1 < by_offset.size(); ++k) {
    const Entry& a = *by_offset[k];
    const Entry& b = *by_offset[k + 1];
    HG_CHECK(a.local_header_offset + 30 + a.compressed_size <= b.local_header_offset,
             "zip archive '" << path_ << "': the data of entry '" << a.name << "' (" << a.compressed_size
                             << " bytes at offset " << a.local_header_offset << ") overlaps entry '" << b.name
                             << "' at offset " << b.local_header_offset << " (a forged archive)");
  }
}

const ZipReader::Entry* ZipReader::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

std::uint64_t ZipReader::data_offset(const Entry& entry) {
  const std::string where = "entry '" + entry.name + "' of zip archive '" + path_ + "'";
  HG_CHECK(entry.local_header_offset <= file_size_ && file_size_ - entry.local_header_offset >= 30,
           where << " lies beyond the end of the file (truncated?)");
  unsigned char h[30];
  in_.clear();
  in_.seekg(static_cast<std::streamoff>(entry.local_header_offset));
  in_.read(reinterpret_cast<char*>(h), 30);
  HG_CHECK(in_ && le(h, 4) == kLocalSig, where << ": bad local header");
  const std::uint64_t start = entry.local_header_offset + 30 + le(h + 26, 2) + le(h + 28, 2);
  HG_CHECK(start <= file_size_ && entry.compressed_size <= file_size_ - start,
           where << ": its " << entry.compressed_size << " bytes of data extend past the end of the file (truncated?)");
  return start;
}

std::string ZipReader::read(const Entry& entry) {
  HG_CHECK(entry.size <= static_cast<std::uint64_t>(std::numeric_limits<std::ptrdiff_t>::max()),
           "entry '" << entry.name << "' of zip archive '" << path_ << "' is too large");
  std::string out(entry.size, '\0');
  read_into(entry, out.data(), out.size());
  return out;
}

void ZipReader::read_into(const Entry& entry, void* dst, std::uint64_t n) {
  const std::string where = "entry '" + entry.name + "' of zip archive '" + path_ + "'";
  HG_CHECK(n == entry.size, where << ": asked for " << n << " bytes, the entry holds " << entry.size);
  const std::uint64_t start = data_offset(entry);
  in_.seekg(static_cast<std::streamoff>(start));
  std::uint32_t crc = 0;
  if (entry.method == 0) {
    in_.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
    HG_CHECK(in_, "cannot read " << where);
    crc = crc_update(0, dst, n);
  } else {
    z_stream zs;
    std::memset(&zs, 0, sizeof zs);
    // Negative window bits: raw deflate data without a zlib header, as zip stores it.
    HG_CHECK(inflateInit2(&zs, -MAX_WBITS) == Z_OK, "zlib cannot start inflating " << where);
    std::vector<char> buf(1 << 20);
    std::uint64_t left = entry.compressed_size, produced = 0;
    auto* out = static_cast<unsigned char*>(dst);
    unsigned char excess = 0;  // output room once n bytes are out: anything written there is too much
    int rc = Z_OK;
    while (rc == Z_OK) {
      if (zs.avail_in == 0 && left > 0) {
        const std::uint64_t chunk = std::min<std::uint64_t>(left, buf.size());
        in_.read(buf.data(), static_cast<std::streamsize>(chunk));
        HG_CHECK(in_, "cannot read " << where);
        left -= chunk;
        zs.next_in = reinterpret_cast<Bytef*>(buf.data());
        zs.avail_in = static_cast<uInt>(chunk);
      }
      const bool full = produced == n;
      const uInt room = full ? 1 : static_cast<uInt>(std::min<std::uint64_t>(n - produced, 1u << 30));
      zs.next_out = full ? &excess : out + produced;
      zs.avail_out = room;
      rc = inflate(&zs, Z_NO_FLUSH);
      const uInt made = room - zs.avail_out;
      if (full && made > 0) rc = Z_DATA_ERROR;
      if (!full) produced += made;
    }
    inflateEnd(&zs);
    HG_CHECK(rc == Z_STREAM_END && produced == n,
             where << ": corrupt or truncated deflate data (" << produced << " of " << n << " bytes inflated)");
    crc = crc_update(0, dst, n);
  }
  HG_CHECK(crc == entry.crc32, where << ": CRC-32 mismatch (the file is corrupt)");
}

}  // namespace hessgap::io
