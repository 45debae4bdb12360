package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

const (
	getPrefix  = "GET "
	pushPrefix = "PUSH "
)

// readGet reads a whole request stream and parses its GET.
func readGet(r io.Reader) (string, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return "", fmt.Errorf("failed to read request: %w", err)
	}
	name, err := parseGet(data)
	if err != nil {
		return "", fmt.Errorf("failed to parse request: %w", err)
	}
	return name, nil
}

func parseGet(data []byte) (string, error) {
	if !bytes.HasPrefix(data, []byte(getPrefix)) {
		return "", errors.New("unexpected data, missing GET prefix")
	}
	name := strings.TrimSpace(string(data[len(getPrefix):]))
	if name == "" {
		return "", errors.New("missing filename in GET")
	}
	return name, nil
}

// parsePush splits "PUSH <name>\n<payload>".
func parsePush(data []byte) (string, []byte, error) {
	if !bytes.HasPrefix(data, []byte(pushPrefix)) {
		return "", nil, errors.New("unexpected data, missing PUSH prefix")
	}
	name, payload, ok := bytes.Cut(data[len(pushPrefix):], []byte("\n"))
	if !ok {
		return "", nil, errors.New("missing newline in PUSH")
	}
	n := strings.TrimSpace(string(name))
	if n == "" {
		return "", nil, errors.New("missing filename in PUSH")
	}
	return n, payload, nil
}

func pushMessage(file string, payload []byte) []byte {
	return append([]byte(pushPrefix+filepath.Base(file)+"\n"), payload...)
}
