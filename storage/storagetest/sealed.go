package storagetest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Sealed returns a value of about size bytes, filled with fill, that carries
// its own length and checksum, so that [CheckSealed] can tell a whole value
// from a torn one. Crash and dropped-connection tests store such values and
// check every one they read back.
func Sealed(fill byte, size int) []byte {
	body := bytes.Repeat([]byte{fill}, size)
	out := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	out = binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(body))
	return append(out, body...)
}

// CheckSealed returns an error if v is not a whole value made by [Sealed].
func CheckSealed(v []byte) error {
	if len(v) < 8 || int(binary.BigEndian.Uint32(v)) != len(v)-8 || crc32.ChecksumIEEE(v[8:]) != binary.BigEndian.Uint32(v[4:]) {
		return fmt.Errorf("torn value of %d bytes", len(v))
	}
	return nil
}
