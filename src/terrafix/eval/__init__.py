"""terrafix.eval"""
