"""terrafix.inference"""
