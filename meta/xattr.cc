#include "meta/xattr.h"

#include <cstring>
#include <string>

#include "absl/strings/str_format.h"

namespace ptmpfs::meta {

namespace {

constexpr size_t kRecordHeader = 5;  // u8 name length + u32 value length

struct Record {
  absl::string_view name;
  absl::string_view value;
  size_t offset;  // of the record in the block
  size_t length;  // of the whole record
};

// Calls visit(record) for each record until it returns false; false if malformed.
template <typename Visit>
bool ForEachRecord(absl::string_view block, Visit visit) {
  size_t offset = 0;
  while (offset < block.size()) {
    if (block.size() - offset < kRecordHeader) return false;
    uint8_t name_length = static_cast<uint8_t>(block[offset]);
    uint32_t value_length;
    memcpy(&value_length, block.data() + offset + 1, sizeof value_length);
    size_t length = kRecordHeader + name_length + value_length;
    if (block.size() - offset < length) return false;
    Record record{block.substr(offset + kRecordHeader, name_length),
                  block.substr(offset + kRecordHeader + name_length, value_length), offset,
                  length};
    if (!visit(record)) return true;
    offset += length;
  }
  return true;
}

absl::Status Corrupt() { return absl::DataLossError("xattr block is malformed"); }

}  // namespace

absl::StatusOr<std::string> Xattrs::Load(const XattrBlock& block) {
  std::string records(block.bytes, '\0');
  if (block.bytes == 0) return records;
  absl::Status loaded = kmem_.LoadBlob(block.address, block.bytes, records.data());
  if (!loaded.ok()) return loaded;
  return records;
}

absl::StatusOr<XattrBlock> Xattrs::StoreNew(const std::string& records, bool from_reserve) {
  if (records.empty()) return XattrBlock{};
  if (records.size() > Kmem::kMaxBlob) {
    return absl::ResourceExhaustedError("xattrs of this node would pass 1 MiB");
  }
  absl::StatusOr<Addr> address = kmem_.StoreBlob(records, from_reserve);
  if (!address.ok()) return address.status();
  return XattrBlock{*address, static_cast<uint32_t>(records.size())};
}

absl::Status Xattrs::Store(XattrBlock& block, const std::string& records, bool from_reserve) {
  absl::StatusOr<XattrBlock> fresh = StoreNew(records, from_reserve);
  if (!fresh.ok()) return fresh.status();
  FreeAll(block);
  block = *fresh;
  return absl::OkStatus();
}

absl::StatusOr<size_t> Xattrs::Get(const XattrBlock& block, absl::string_view name, char* out,
                                   size_t out_size) {
  if (name.size() > kMaxName) return absl::OutOfRangeError("xattr name longer than 255 bytes");
  absl::StatusOr<std::string> records = Load(block);
  if (!records.ok()) return records.status();
  std::optional<absl::string_view> found;
  if (!ForEachRecord(*records, [&](const Record& record) {
        if (record.name != name) return true;
        found = record.value;
        return false;
      })) {
    return Corrupt();
  }
  if (!found.has_value()) return absl::NotFoundError("no such attribute");
  if (out_size == 0) return found->size();
  if (out_size < found->size()) return absl::OutOfRangeError("buffer too small for the value");
  memcpy(out, found->data(), found->size());
  return found->size();
}

absl::StatusOr<std::string> Xattrs::WithValue(const XattrBlock& block, absl::string_view name,
                                              absl::string_view value, SetMode mode) {
  if (name.empty() || name.size() > kMaxName) {
    return absl::OutOfRangeError("xattr name empty or longer than 255 bytes");
  }
  if (value.size() > kMaxValue) {
    return absl::FailedPreconditionError("xattr value longer than 64 KiB");
  }
  absl::StatusOr<std::string> records = Load(block);
  if (!records.ok()) return records.status();
  std::optional<Record> existing;
  if (!ForEachRecord(*records, [&](const Record& record) {
        if (record.name != name) return true;
        existing = record;
        return false;
      })) {
    return Corrupt();
  }
  if (existing.has_value() && mode == SetMode::kCreate) {
    return absl::AlreadyExistsError("attribute exists");
  }
  if (!existing.has_value() && mode == SetMode::kReplace) {
    return absl::NotFoundError("no such attribute");
  }
  std::string updated = *records;
  if (existing.has_value()) updated.erase(existing->offset, existing->length);
  const uint8_t name_length = static_cast<uint8_t>(name.size());
  const uint32_t value_length = static_cast<uint32_t>(value.size());
  updated.push_back(static_cast<char>(name_length));
  updated.append(reinterpret_cast<const char*>(&value_length), sizeof value_length);
  updated.append(name.data(), name.size());
  updated.append(value.data(), value.size());
  return updated;
}

absl::Status Xattrs::Set(XattrBlock& block, absl::string_view name, absl::string_view value,
                         SetMode mode) {
  absl::StatusOr<std::string> updated = WithValue(block, name, value, mode);
  if (!updated.ok()) return updated.status();
  return Store(block, *updated);
}

absl::StatusOr<XattrBlock> Xattrs::SetStaged(const XattrBlock& block, absl::string_view name,
                                             absl::string_view value, SetMode mode) {
  absl::StatusOr<std::string> updated = WithValue(block, name, value, mode);
  if (!updated.ok()) return updated.status();
  return StoreNew(*updated, /*from_reserve=*/false);
}

absl::Status Xattrs::Remove(XattrBlock& block, absl::string_view name) {
  if (name.size() > kMaxName) return absl::OutOfRangeError("xattr name longer than 255 bytes");
  absl::StatusOr<std::string> records = Load(block);
  if (!records.ok()) return records.status();
  std::optional<Record> existing;
  if (!ForEachRecord(*records, [&](const Record& record) {
        if (record.name != name) return true;
        existing = record;
        return false;
      })) {
    return Corrupt();
  }
  if (!existing.has_value()) return absl::NotFoundError("no such attribute");
  std::string updated = *records;
  updated.erase(existing->offset, existing->length);
  return Store(block, updated, /*from_reserve=*/true);
}

absl::StatusOr<size_t> Xattrs::List(const XattrBlock& block, char* out, size_t out_size) {
  absl::StatusOr<std::string> records = Load(block);
  if (!records.ok()) return records.status();
  std::string names;
  if (!ForEachRecord(*records, [&](const Record& record) {
        names.append(record.name.data(), record.name.size());
        names.push_back('\0');
        return true;
      })) {
    return Corrupt();
  }
  if (out_size == 0) return names.size();
  if (out_size < names.size()) return absl::OutOfRangeError("buffer too small for the names");
  memcpy(out, names.data(), names.size());
  return names.size();
}

void Xattrs::FreeAll(XattrBlock& block) {
  if (block.address != kNullAddr) kmem_.FreeBlob(block.address, block.bytes);
  block = XattrBlock{};
}

}  // namespace ptmpfs::meta
