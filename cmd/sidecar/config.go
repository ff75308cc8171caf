package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// configFlag names the root's persistent flag of the YAML file that
// bindSources reads for every subcommand.
const configFlag = "config"

// addConfigFlag gives root, and through it every subcommand, --config
// and fills each subcommand's flags from bindSources before it runs: one
// way to take flags for all of them.
func addConfigFlag(root *cobra.Command) {
	root.PersistentFlags().String(configFlag, "", "YAML file whose keys are this command's flag names (flags and HANGUP_* variables win)")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error { return bindSources(cmd) }
}

// bindSources fills every flag the command line did not set from, in
// order, the HANGUP_* environment variable of the same name and the YAML
// config file given with --config (same keys as the flags). Flags win.
func bindSources(cmd *cobra.Command) error {
	fs := cmd.Flags()
	var file map[string]any
	if path, _ := fs.GetString(configFlag); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return usageError{fmt.Errorf("invalid --config %q: %w", path, err)}
		}
		if err := yaml.Unmarshal(data, &file); err != nil {
			return usageError{fmt.Errorf("invalid --config %q: not YAML: %w", path, err)}
		}
		var unknown []string
		for k := range file {
			if f := fs.Lookup(k); f == nil || !fromSources(f) {
				unknown = append(unknown, k)
			}
		}
		if len(unknown) > 0 {
			sort.Strings(unknown)
			return usageError{fmt.Errorf("invalid --config %q: unknown keys %s: want the flag names of %q",
				path, strings.Join(unknown, ", "), cmd.CommandPath())}
		}
	}
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || !fromSources(f) {
			return
		}
		env := "HANGUP_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = usageError{fmt.Errorf("invalid %s %q: %v", env, v, e)}
			}
			return
		}
		if v, ok := file[f.Name]; ok {
			s, e := yamlScalar(v)
			if e != nil {
				err = usageError{fmt.Errorf("invalid %s in --config: %v", f.Name, e)}
				return
			}
			if e := fs.Set(f.Name, s); e != nil {
				err = usageError{fmt.Errorf("invalid %s %q in --config: %v", f.Name, s, e)}
			}
		}
	})
	return err
}

// fromSources says whether f may come from HANGUP_* or --config: all but
// --config itself and cobra's --help.
func fromSources(f *pflag.Flag) bool {
	return f.Name != configFlag && f.Name != "help"
}

// addLogFlags binds --log-format and --log-level, read by newLogger;
// format is the command's default format.
func addLogFlags(f *pflag.FlagSet, format, level *string, defaultFormat string) {
	f.StringVar(format, "log-format", defaultFormat, "log format: text or json")
	f.StringVar(level, "log-level", "info", "log level: debug, info, warn or error")
}

// yamlScalar turns a config value into flag syntax: lists become
// comma-separated, an empty value the empty string. A mapping fits no
// flag.
func yamlScalar(v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case map[string]any:
		return "", errors.New("a mapping: want a value or a list of values")
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			s, err := yamlScalar(e)
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	case float64:
		if v == float64(int64(v)) {
			return fmt.Sprint(int64(v)), nil
		}
	}
	return fmt.Sprint(v), nil
}

// newLogger builds the process's one logger from --log-format and
// --log-level.
func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", level)}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, usageError{fmt.Errorf("invalid --log-format %q: want text or json", format)}
}
