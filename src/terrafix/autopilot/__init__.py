"""terrafix.autopilot"""
