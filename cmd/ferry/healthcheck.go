package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"
)

var healthcheckCommand = &cliCommand{
	name:    "healthcheck",
	args:    "[--url URL]",
	summary: "exit 0 when the server answers /readyz with 200",
	about: `Healthcheck asks a running server's /readyz, by default the one this
environment's HOST and PORT name (0.0.0.0 and :: are asked on loopback), and
exits 0 when it answers 200, 1 otherwise. It is the container's HEALTHCHECK,
where the image has no curl.`,
	run: healthcheck,
}

func healthcheck(ctx context.Context, c *cli, f *flagSet, args []string) error {
	target := f.String("url", "", "the server's base URL; default: http://HOST:PORT")
	if err := f.parse(args); err != nil {
		return err
	}
	url := *target
	if url == "" {
		cfg, err := c.loadConfig("", false)
		if err != nil {
			return err
		}
		host, port, _ := net.SplitHostPort(cfg.Addr)
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = "127.0.0.1"
		}
		url = "http://" + net.JoinHostPort(host, port)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url+"/readyz", nil)
	if err != nil {
		return fmt.Errorf("--url: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("not ready: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready: /readyz answered %s", resp.Status)
	}
	fmt.Fprintln(c.stdout, "ready")
	return nil
}
