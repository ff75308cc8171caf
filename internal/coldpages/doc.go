// Package coldpages gives back the pages of the running executable that
// only start-up used.
//
// A Go binary's package initialisers are spread over its whole text, and
// the kernel maps file pages around each fault (fault-around, 64 KiB on
// Linux), so by the time an idle proxy is ready nearly all of its
// read-only segments (code, type data, pclntab) are mapped: 15 MB of a
// 19 MB binary, against 2 MB of heap and stacks. Few of those pages run
// again. Release drops the process's mappings of them
// (madvise(MADV_DONTNEED) on the executable's read-only, private
// mappings): the pages stay in the page cache, shared with every other
// process of the same image, and the ones that run again are faulted back
// in from there without I/O. Only read-only mappings none of whose pages was
// written are touched, so no data is lost: writable ones (.data, .bss)
// and read-only ones the dynamic loader relocated (a PIE's or a cgo
// binary's RELRO, shown in smaps as Anonymous) are left alone.
//
// It owns nothing but that one call; when to call it (after start-up) is
// the command's decision.
package coldpages
